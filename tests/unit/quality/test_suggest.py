"""Assisted mappings (quality/suggest): names into concepts, scores, the catalogue, drafts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from quality.suggest import CatalogueError, fields_of, suggest
from quality.suggest.draft import draft
from quality.suggest.names import concepts, words
from quality.suggest.scoring import name_score, type_score, value_score
from topologies.customer_sync.mapping import load_mappings
from topologies.products.catalog import load_mapping

ROOT = Path(__file__).resolve().parents[3]


def test_names_split_on_case_underscores_dots_and_custom_suffixes() -> None:
    assert words("MailingPostalCode") == ["mailing", "postal", "code"]
    assert words("billing_address.postal_code") == ["billing", "address", "postal", "code"]
    assert words("pi__score__c") == ["pi", "score", "c"]
    assert words("addressOne") == ["address", "one"]


def test_synonyms_meet_in_one_concept() -> None:
    assert concepts("zip") == concepts("MailingPostalCode") == concepts("billing_address.postal_code") == ("postcode",)
    assert concepts("addressOne") == concepts("MailingStreet") == ("street",)
    assert name_score("uom", "QuantityUnitOfMeasure") == 1.0
    assert name_score("email", "MailingCity") < 0.5


def test_types_and_values_weigh_in() -> None:
    assert type_score("number", "date") == 0.0 and type_score("string", "number") == 0.5
    assert value_score(["a@x.example", "B@y.example"], ["b@y.example", "a@x.example"]) == 1.0
    assert value_score(["a@x.example"], ["q@w.example"]) == pytest.approx(0.7)  # same shape, no shared value
    assert value_score([], ["x"]) is None


def test_samples_decide_between_names_that_say_little() -> None:
    samples = {"tims.customer": [{"status": "active", "payment_terms": "NET30"}],
               "salesforce.Contact": [{"Department": "NET30", "Title": "Buyer"}]}
    plain = {s.target: s for s in suggest("tims.customer", "salesforce.Contact")}
    helped = {s.target: s for s in suggest("tims.customer", "salesforce.Contact", samples=samples)}
    assert "Department" not in plain
    assert helped["Department"].source == "payment_terms" and helped["Department"].values == 1.0


def test_suggest_finds_the_products_pairs() -> None:
    found = {s.target: s.source for s in suggest("tims.item", "salesforce.Product2")}
    assert found["ProductCode"] == "sku" and found["Family"] == "category" and found["QuantityUnitOfMeasure"] == "uom"
    assert "Id" not in found and "CreatedDate" not in found


def test_an_unknown_object_names_the_known_ones() -> None:
    with pytest.raises(CatalogueError, match="tims.customer"):
        fields_of("tims.customers")


def test_the_catalogue_is_what_the_sandbox_and_the_contract_say() -> None:
    spec = importlib.util.spec_from_file_location("build_field_catalogue", ROOT / "scripts" / "build_field_catalogue.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "quality" / "suggest" / "data" / "catalogue.json").read_text() == module.render(), \
        "run scripts/build_field_catalogue.py"


@pytest.mark.parametrize(("source", "target"), [("tims.customer", "salesforce.Contact"),
                                                ("pardot.prospect", "canonical.customer"),
                                                ("canonical.customer", "tims.customer")])
def test_a_draft_is_a_mapping_file_the_customer_sync_loads(tmp_path: Path, source: str, target: str) -> None:
    (tmp_path / "draft.yaml").write_text(draft(source, target, "draft"))
    loaded = load_mappings(tmp_path)
    assert loaded.inbound or loaded.outbound
    if target == "salesforce.Contact":
        assert loaded.inbound[source]["postal_code"].source == "billing_address.postal_code"
        assert loaded.outbound[target].fields["MailingPostalCode"].source == "postal_code"


def test_a_products_draft_is_a_file_the_products_flow_loads(tmp_path: Path) -> None:
    (tmp_path / "products.yaml").write_text(draft("tims.item", "salesforce.Product2", "products"))
    rules = {rule.tims: rule for rule in load_mapping(tmp_path).fields}
    assert rules["sku"].salesforce == "ProductCode" and rules["unit_price"].kind == "money"


def test_objects_no_flow_joins_get_no_draft() -> None:
    with pytest.raises(CatalogueError, match="no flow"):
        draft("tims.invoice", "salesforce.Task", "x")
