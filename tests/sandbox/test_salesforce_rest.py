"""The simulated org's REST API, driven by simple-salesforce (a real third-party client)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (SalesforceMalformedRequest, SalesforceMoreThanOneRecord,
                                          SalesforceResourceNotFound)

from sandbox.salesforce.org import FieldDef

from .conftest import SfRestServer

OURS = {"Sforce-Call-Options": "client=tims-connect"}
UPSERT_PATH = "composite/sobjects/Contact/TIMS_Customer_ID__c"


def contact(ext: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Contact"}, "TIMS_Customer_ID__c": ext, **fields}


def test_versions_resources_and_limit_header(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    versions = requests.get(f"{sf_rest_server.url}/services/data/", verify=sf_rest_server.cert).json()
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions

    limits = sf_rest_client.limits()
    assert limits["DailyApiRequests"]["Max"] == 100_000
    used = sf_rest_client.api_usage["api-usage"].used
    assert limits["DailyApiRequests"]["Remaining"] == 100_000 - used
    contacts = sf_rest_client.Contact
    contacts.create({"LastName": "Header"})
    assert contacts.api_usage["api-usage"] == (used + 1, 100_000)
    sf_rest_client.limits()
    assert sf_rest_client.api_usage["api-usage"].used == used + 2

    session = sf_rest_server.session()
    token = sf_rest_client.session_id
    missing = session.get(f"{sf_rest_server.url}/services/data/v12.0/limits",
                          headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"


def test_create_read_update_delete(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    created = sf_rest_client.Contact.create({"FirstName": "Ada", "LastName": "Lovelace",
                                             "Email": "ada@example.com", "pi__score__c": 42})
    assert created["success"] is True and created["errors"] == []
    rid = created["id"]
    assert len(rid) == 18 and rid.startswith("003")

    record = sf_rest_client.Contact.get(rid)
    assert record["attributes"] == {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{rid}"}
    assert (record["Name"], record["Email"], record["pi__score__c"]) == ("Ada Lovelace", "ada@example.com", 42.0)
    assert record["IsDeleted"] is False and record["CreatedDate"].endswith("+0000")
    assert record["OwnerId"] == sf_rest_server.org.integration_user_id
    assert sf_rest_client.Contact.get(rid[:15])["Id"] == rid  # 15-character ids resolve too

    assert sf_rest_client.Contact.update(rid, {"Phone": "+44 20 7946 0000"}) == 204
    assert sf_rest_server.org.get("Contact", rid)["Phone"] == "+44 20 7946 0000"
    only = sf_rest_client.restful(f"sobjects/Contact/{rid}", params={"fields": "Phone,Email"})
    assert set(only) == {"attributes", "Phone", "Email"}

    assert sf_rest_client.Contact.delete(rid) == 204
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf_rest_client.Contact.get(rid)
    assert gone.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert sf_rest_server.org.count("Contact") == 0
    deleted = sf_rest_client.query_all("SELECT Id FROM Contact", include_deleted=True)
    assert [r["Id"] for r in deleted["records"]] == [rid]


def test_upsert_by_external_id_creates_then_updates(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    assert sf_rest_client.Contact.upsert("TIMS_Customer_ID__c/C-100", {"LastName": "First"}) == 201
    assert sf_rest_client.Contact.upsert("TIMS_Customer_ID__c/C-100", {"LastName": "Second"}) == 200
    body = sf_rest_client.restful("sobjects/Contact/TIMS_Customer_ID__c/c-100", method="PATCH",
                                  json={"Title": "CFO"})  # external ids match case-insensitively
    assert body["created"] is False and body["success"] is True
    record = sf_rest_client.Contact.get_by_custom_id("TIMS_Customer_ID__c", "C-100")
    assert (record["LastName"], record["Title"], record["TIMS_Customer_ID__c"]) == ("Second", "CFO", "C-100")
    assert sf_rest_server.org.count("Contact") == 1
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf_rest_client.Contact.get_by_custom_id("TIMS_Customer_ID__c", "C-404")
    assert missing.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as no_field:
        sf_rest_client.Contact.upsert("Email/a@b.co", {"LastName": "X"})
    assert no_field.value.content[0]["message"] == (
        "Provided external ID field does not exist or is not accessible: Email")


def test_upsert_with_several_matches_is_300(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    org = sf_rest_server.org
    org.add_field("Contact", FieldDef("Legacy_Key__c", "string", external_id=True))  # not unique
    first = org.create("Contact", {"LastName": "One", "Legacy_Key__c": "L-1"})
    second = org.create("Contact", {"LastName": "Two", "Legacy_Key__c": "L-1"})
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        sf_rest_client.Contact.upsert("Legacy_Key__c/L-1", {"Title": "x"})
    assert many.value.status == 300
    assert sorted(many.value.content) == sorted(f"/services/data/v62.0/sobjects/Contact/{i}" for i in (first, second))
    assert org.get("Contact", first)["Title"] is None


def test_query_filters_order_and_paging(sf_rest_factory: Callable[..., SfRestServer]) -> None:
    server = sf_rest_factory(query_batch_size=3)
    sf = server.client()
    ids = [server.org.create("Lead", {"LastName": f"L{i}", "Company": "Acme" if i % 2 else "Globex",
                                      "AnnualRevenue": i * 1000}) for i in range(8)]
    first = sf.query("SELECT Id, LastName FROM Lead ORDER BY LastName")
    assert first["totalSize"] == 8 and first["done"] is False and len(first["records"]) == 3
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    everything = sf.query_all("SELECT Id, LastName FROM Lead ORDER BY LastName")
    assert [r["LastName"] for r in everything["records"]] == [f"L{i}" for i in range(8)]
    assert list(everything["records"][0]) == ["attributes", "Id", "LastName"]

    picked = sf.query(f"SELECT Id FROM Lead WHERE Id IN ('{ids[1]}', '{ids[2][:15]}')")
    assert {r["Id"] for r in picked["records"]} == {ids[1], ids[2]}
    acme = sf.query("SELECT LastName FROM Lead WHERE company = 'ACME' AND AnnualRevenue >= 3000 "
                    "ORDER BY AnnualRevenue DESC LIMIT 2")
    assert [r["LastName"] for r in acme["records"]] == ["L7", "L5"]
    assert sf.query("SELECT COUNT() FROM Lead WHERE LastName LIKE 'L%' OR Company = 'none'")["totalSize"] == 8

    assert sf.query("SELECT COUNT() FROM Lead WHERE LastModifiedDate > 2020-01-01T00:00:00Z")["totalSize"] == 8
    assert sf.query("SELECT COUNT() FROM Lead WHERE LastModifiedDate > 2100-01-01T00:00:00.000+00:00")["totalSize"] == 0
    server.org.delete("Lead", ids[0])
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 7
    assert sf.query_all("SELECT Id FROM Lead WHERE IsDeleted = true", include_deleted=True)["totalSize"] == 1

    for soql, code in (("SELECT Nope FROM Lead", "INVALID_FIELD"), ("SELECT Id FROM Nope", "INVALID_TYPE"),
                       ("SELECT Id Lead", "MALFORMED_QUERY"),
                       ("SELECT Id FROM Lead WHERE AnnualRevenue = '5'", "INVALID_FIELD")):
        with pytest.raises(SalesforceMalformedRequest) as bad:
            sf.query(soql)
        assert bad.value.content[0]["errorCode"] == code, soql
    with pytest.raises(SalesforceMalformedRequest) as locator:
        sf.query_more("01gNOPE-3")
    assert locator.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_collections_upsert_reports_each_record(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    sf_rest_server.org.create("Contact", {"LastName": "Existing", "TIMS_Customer_ID__c": "C-2"})
    response = sf_rest_client.restful(UPSERT_PATH, method="PATCH", headers=OURS, json={
        "allOrNone": False,
        "records": [
            contact("C-1", LastName="New"),
            contact("C-2", LastName="Updated"),
            contact("C-3"),  # LastName missing
            contact("C-4", LastName="Bad", Email="not-an-email"),
            contact("C-5", LastName="Twin"),
            contact("C-5", LastName="Twin again"),
            contact("C-6", LastName="Fine", Nope__c=1),
        ],
    })
    assert [r["success"] for r in response] == [True, True, False, False, False, False, False]
    assert response[0]["created"] is True and response[1]["created"] is False
    assert response[2]["errors"] == [{"statusCode": "REQUIRED_FIELD_MISSING",
                                      "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]
    assert response[3]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert {r["errors"][0]["statusCode"] for r in response[4:6]} == {"DUPLICATE_EXTERNAL_ID"}
    assert response[6]["errors"][0] == {"statusCode": "INVALID_FIELD", "fields": [],
                                        "message": "No such column 'Nope__c' on sobject of type Contact"}
    names = {r["TIMS_Customer_ID__c"]: r["LastName"] for r in sf_rest_server.org.records("Contact")}
    assert names == {"C-1": "New", "C-2": "Updated"}
    upserts = [c for c in sf_rest_server.changes if c.change_origin.endswith("client=tims-connect")]
    assert [(c.change_type, c.sequence_number) for c in upserts] == [("CREATE", 1), ("UPDATE", 2)]
    assert len({c.transaction_key for c in upserts}) == 1


def test_collections_upsert_with_null_clears_the_field(sf_rest_server: SfRestServer,
                                                       sf_rest_client: Salesforce) -> None:
    """JSON null clears a field, as in the real REST API (fieldsToNull is SOAP only); a required
    field cannot be cleared; fields the record does not name are left alone."""
    rid = sf_rest_server.org.create("Contact", {"LastName": "Null", "Phone": "+15551234567", "MailingCity": "York",
                                                "TIMS_Payment_Terms__c": "NET30"})
    response = sf_rest_client.restful("composite/sobjects/Contact/Id", method="PATCH", headers=OURS, json={
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, "Id": rid, "Phone": None, "TIMS_Payment_Terms__c": None}],
    })
    assert [(r["success"], r["created"]) for r in response] == [(True, False)]
    stored = sf_rest_server.org.get("Contact", rid) or {}
    assert (stored["Phone"], stored["TIMS_Payment_Terms__c"], stored["MailingCity"]) == (None, None, "York")
    cleared = sf_rest_server.changes[-1]
    assert cleared.change_type == "UPDATE" and set(cleared.nulled_fields) == {"Phone", "TIMS_Payment_Terms__c"}
    assert {"Phone", "TIMS_Payment_Terms__c"} <= set(cleared.changed_fields)

    refused = sf_rest_client.restful("composite/sobjects/Contact/Id", method="PATCH", headers=OURS, json={
        "allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "Id": rid, "LastName": None}]})
    assert refused[0]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert (sf_rest_server.org.get("Contact", rid) or {})["LastName"] == "Null"


def test_collections_all_or_none_rolls_back(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    before = len(sf_rest_server.changes)
    response = sf_rest_client.restful(UPSERT_PATH, method="PATCH", json={
        "allOrNone": True,
        "records": [contact("C-1", LastName="A"), contact("C-2"), contact("C-3", LastName="C")],
    })
    assert response[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    for ok in (response[0], response[2]):
        assert ok["success"] is False and ok["id"] is None
        assert ok["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sf_rest_server.org.count("Contact") == 0
    assert len(sf_rest_server.changes) == before


def test_collections_limit_and_other_operations(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        sf_rest_client.restful(UPSERT_PATH, method="PATCH",
                               json={"records": [contact(f"C-{i}", LastName="x") for i in range(201)]})
    assert too_many.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert sf_rest_server.org.count("Contact") == 0

    created = sf_rest_client.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "Account"}, "Name": "Acme"},
        {"attributes": {"type": "Lead"}, "LastName": "Lee", "Company": "Lee Ltd"},
        {"attributes": {"type": "Account"}},
    ]})
    assert [r["success"] for r in created] == [True, True, False]
    account, lead = created[0]["id"], created[1]["id"]
    assert account.startswith("001") and lead.startswith("00Q")

    updated = sf_rest_client.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Account"}, "id": account, "TIMS_Payment_Terms__c": "NET30"},
        {"attributes": {"type": "Account"}, "Name": "no id"},
    ]})
    assert updated[0] == {"id": account, "success": True, "errors": []}
    assert updated[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"

    fetched = sf_rest_client.restful("composite/sobjects/Account", params={
        "ids": f"{account},001000000000000AAA", "fields": "Name,TIMS_Payment_Terms__c"})
    assert fetched[0]["TIMS_Payment_Terms__c"] == "NET30" and fetched[1] is None

    deleted = sf_rest_client.restful("composite/sobjects", method="DELETE", params={"ids": f"{lead},garbage"})
    assert deleted[0] == {"id": lead, "success": True, "errors": []}
    assert deleted[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert sf_rest_server.org.count("Lead") == 0


def test_validation_errors_have_salesforce_shapes(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    def error_of(call: Callable[[], Any]) -> dict[str, Any]:
        with pytest.raises(Exception) as caught:
            call()
        return caught.value.content[0]  # type: ignore[attr-defined,no-any-return]

    assert error_of(lambda: sf_rest_client.Contact.create({"LastName": "x", "Shoe_Size__c": 9})) == {
        "message": "No such column 'Shoe_Size__c' on sobject of type Contact", "errorCode": "INVALID_FIELD",
        "fields": []}
    missing = error_of(lambda: sf_rest_client.Lead.create({"FirstName": "x"}))
    assert missing["errorCode"] == "REQUIRED_FIELD_MISSING" and missing["fields"] == ["LastName", "Company"]
    assert error_of(lambda: sf_rest_client.Account.create({"Type": "Customer"}))["fields"] == ["Name"]

    sf_rest_client.Account.create({"Name": "A", "TIMS_Customer_ID__c": "T-1"})
    dup = error_of(lambda: sf_rest_client.Account.create({"Name": "B", "TIMS_Customer_ID__c": "t-1"}))
    assert dup["errorCode"] == "DUPLICATE_VALUE"
    assert dup["message"].startswith("duplicate value found: TIMS_Customer_ID__c duplicates value on record with id: 001")

    assert error_of(lambda: sf_rest_client.Contact.get("not-an-id"))["errorCode"] == "NOT_FOUND"
    lead = sf_rest_client.Lead.create({"LastName": "L", "Company": "C"})["id"]
    assert error_of(lambda: sf_rest_client.Contact.update(lead, {"Title": "x"}))["errorCode"] == "MALFORMED_ID"
    assert error_of(lambda: sf_rest_client.Contact.create(
        {"LastName": "x", "AccountId": "bogus"}))["errorCode"] == "MALFORMED_ID"
    assert error_of(lambda: sf_rest_client.Contact.create(
        {"LastName": "x", "AccountId": lead}))["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert error_of(lambda: sf_rest_client.Contact.create(
        {"LastName": "x", "IsDeleted": True}))["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert error_of(lambda: sf_rest_client.Contact.create(
        {"LastName": "x", "TIMS_Credit_Limit__c": "lots"}))["errorCode"] == "JSON_PARSER_ERROR"

    rule = sf_rest_server.admin("POST", "/validation-rules", json={
        "object": "Contact", "field": "TIMS_Payment_Terms__c", "equals": "COD",
        "message": "Cash on delivery is not offered"})
    assert rule.status_code == 201
    refused = error_of(lambda: sf_rest_client.Contact.create({"LastName": "x", "TIMS_Payment_Terms__c": "COD"}))
    assert refused == {"message": "Cash on delivery is not offered", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                       "fields": ["TIMS_Payment_Terms__c"]}
    assert sf_rest_server.admin("DELETE", "/validation-rules").json() == {"removed": 1}
    assert sf_rest_client.Contact.create({"LastName": "x", "TIMS_Payment_Terms__c": "COD"})["success"] is True


def test_change_events_carry_origin_and_changed_fields(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    org, changes = sf_rest_server.org, sf_rest_server.changes
    rid = sf_rest_client.Contact.create({"LastName": "Event", "Email": "e@x.io", "Title": "CTO"}, headers=OURS)["id"]
    [created] = changes
    assert (created.entity, created.record_id, created.change_type) == ("Contact", rid, "CREATE")
    assert created.change_origin == "com/salesforce/api/rest/62.0;client=tims-connect"
    assert created.commit_user == org.integration_user_id
    assert created.fields["Email"] == "e@x.io" and "Name" not in created.fields
    assert abs(created.commit_timestamp - org._now() * 1000) < 60_000

    sf_rest_client.Contact.update(rid, {"Email": "e@x.io", "Title": "", "Phone": "123"})
    update = changes[-1]
    assert update.change_type == "UPDATE" and update.change_origin == "com/salesforce/api/rest/62.0"
    assert set(update.changed_fields) - {"LastModifiedDate", "SystemModstamp"} == {"Title", "Phone"}
    assert update.nulled_fields == ("Title",)
    assert update.fields["Phone"] == "123" and "Email" not in update.fields
    assert update.transaction_key != created.transaction_key

    org.update("Contact", rid, {"Department": "R&D"})  # a UI user's edit
    ui = changes[-1]
    assert ui.change_origin == "" and ui.commit_user == org.admin_user_id
    assert ui.commit_number > update.commit_number

    sf_rest_client.Contact.delete(rid)
    assert (changes[-1].change_type, changes[-1].fields) == ("DELETE", {})
    org.undelete("Contact", rid)
    assert changes[-1].change_type == "UNDELETE" and changes[-1].fields["LastName"] == "Event"


def test_lead_conversion_extension(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    lead = sf_rest_client.Lead.create({"FirstName": "Grace", "LastName": "Hopper", "Company": "Navy",
                                       "Email": "grace@navy.example", "City": "Arlington",
                                       "pi__score__c": 88, "pi__grade__c": "A"})["id"]
    result = sf_rest_client.restful("sandbox/convertLead", method="POST", headers=OURS,
                                    json={"leadId": lead, "createOpportunity": False})
    assert result["success"] is True and result["opportunityId"] is None
    contact_rec = sf_rest_client.Contact.get(result["contactId"])
    assert (contact_rec["Email"], contact_rec["MailingCity"], contact_rec["pi__grade__c"]) == (
        "grace@navy.example", "Arlington", "A")
    assert contact_rec["AccountId"] == result["accountId"]
    assert sf_rest_client.Account.get(result["accountId"])["Name"] == "Navy"
    converted = sf_rest_client.Lead.get(lead)
    assert converted["IsConverted"] is True and converted["Status"] == "Closed - Converted"
    assert (converted["ConvertedContactId"], converted["ConvertedAccountId"]) == (
        result["contactId"], result["accountId"])
    kinds = [(c.entity, c.change_type) for c in sf_rest_server.changes[1:]]
    assert kinds == [("Account", "CREATE"), ("Contact", "CREATE"), ("Lead", "UPDATE")]
    assert len({c.transaction_key for c in sf_rest_server.changes[1:]}) == 1
    with pytest.raises(SalesforceMalformedRequest) as again:
        sf_rest_client.Lead.update(lead, {"Title": "x"})
    assert again.value.content[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"

    other = sf_rest_server.org.create("Lead", {"LastName": "Two", "Company": "Navy"})
    second = sf_rest_server.org.convert_lead(other, account_id=result["accountId"])
    assert second.account_id == result["accountId"] and second.opportunity_id is not None
    assert sf_rest_server.org.get("Opportunity", second.opportunity_id)["AccountId"] == result["accountId"]


def test_describe_and_admin_state(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    fields = {f["name"]: f for f in sf_rest_client.Contact.describe()["fields"]}
    assert fields["TIMS_Customer_ID__c"]["externalId"] is True and fields["TIMS_Customer_ID__c"]["unique"] is True
    assert fields["Email"]["type"] == "email" and fields["FirstName"]["compoundFieldName"] == "Name"
    assert {s["name"] for s in sf_rest_client.describe()["sobjects"]} >= {
        "Lead", "Contact", "Account", "Opportunity", "Campaign", "CampaignMember", "Product2", "Task"}
    assert [f.name for f in sf_rest_server.org.describe("Lead")][:2] == ["Id", "OwnerId"]

    sf_rest_client.Contact.create({"LastName": "A"}, headers=OURS)
    sf_rest_client.Contact.create({"LastName": "B"}, headers=OURS)
    sf_rest_client.query("SELECT Id FROM Contact")
    created = sf_rest_server.admin("POST", "/records/Account", json={"Name": "UI made"})
    assert created.status_code == 201 and created.json()["id"].startswith("001")

    state = sf_rest_server.admin("GET", "/state").json()
    assert state["counts"]["Contact"] == 2 and state["counts"]["Account"] == 1
    assert state["api"]["by_client"]["tims-connect"] == 2
    assert state["api"]["by_client_kind"]["tims-connect create"] == 2
    assert state["api"]["by_kind"]["query"] == 1
    assert [r["LastName"] for r in state["records"]["Contact"]] == ["A", "B"]
    assert sf_rest_server.changes[-1].change_origin == ""

    assert sf_rest_server.admin("POST", "/reset").status_code == 200
    assert sf_rest_server.org.count("Contact") == 0


def test_price_books_and_opportunity_lines(sf_rest_server: SfRestServer, sf_rest_client: Salesforce) -> None:
    """The standard price book exists from the start; a line takes its product and price from its
    entry, has quantity × price as its total, and the Opportunity's Amount is the sum of its
    lines, in the line's own transaction (a change event for each)."""
    org = sf_rest_server.org
    book = org.standard_pricebook_id
    assert book and sf_rest_client.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"] == book
    product = sf_rest_client.Product2.create({"Name": "Argon", "ProductCode": "AR-40"})["id"]
    assert sf_rest_client.PricebookEntry.upsert("TIMS_Item_Number__c/IT1", {
        "Pricebook2Id": book, "Product2Id": product, "UnitPrice": 42.5, "IsActive": True}) == 201
    entry = sf_rest_client.PricebookEntry.get_by_custom_id("TIMS_Item_Number__c", "IT1")
    assert entry["ProductCode"] == "AR-40"
    with pytest.raises(SalesforceMalformedRequest):  # neither the book nor the product of an entry changes
        sf_rest_client.PricebookEntry.upsert("TIMS_Item_Number__c/IT1", {"Product2Id": product, "UnitPrice": 40})
    account = sf_rest_client.Account.create({"Name": "Weld Co"})["id"]
    opportunity = sf_rest_client.Opportunity.create({"Name": "Big", "AccountId": account, "StageName": "Prospecting",
                                                     "CloseDate": "2026-12-01"})["id"]
    before = len(sf_rest_server.changes)
    line = sf_rest_client.OpportunityLineItem.create({"OpportunityId": opportunity, "PricebookEntryId": entry["Id"],
                                                      "Quantity": 3})["id"]
    assert (org.get("OpportunityLineItem", line)["Product2Id"], org.get("OpportunityLineItem", line)["TotalPrice"]) == (
        product, 127.5)
    assert org.get("Opportunity", opportunity)["Amount"] == 127.5
    changes = sf_rest_server.changes[before:]
    assert [(c.entity, c.change_type) for c in changes] == [("OpportunityLineItem", "CREATE"), ("Opportunity", "UPDATE")]
    assert len({c.transaction_key for c in changes}) == 1
    sf_rest_client.OpportunityLineItem.delete(line)
    assert org.get("Opportunity", opportunity)["Amount"] == 0.0
