"""Salesforce auth and REST client against an in-process fake (httpx.MockTransport)."""

from __future__ import annotations

import json
import urllib.parse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from connectors.errors import FatalError, RetryableError
from connectors.retry import RetryPolicy
from connectors.salesforce.auth import TokenProvider
from connectors.salesforce.client import SalesforceRest
from connectors.salesforce.config import AuthFlow, SalesforceConfig

LOGIN = "https://login.example"
INSTANCE = "https://org.example"


class FakeOrg:
    def __init__(self) -> None:
        self.tokens_issued = 0
        self.valid = set()
        self.requests: list[httpx.Request] = []
        self.fail_next: list[httpx.Response] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/services/oauth2/token":
            form = dict(urllib.parse.parse_qsl(request.content.decode()))
            self.tokens_issued += 1
            token = f"tok{self.tokens_issued}"
            self.valid = {token}
            return httpx.Response(200, json={"access_token": token, "instance_url": INSTANCE,
                                             "id": f"{LOGIN}/id/00Dxx0000000001AAA/005xx0000000001AAA",
                                             "grant": form["grant_type"]})
        if self.fail_next:
            return self.fail_next.pop(0)
        if request.headers["Authorization"].removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        headers = {"Sforce-Limit-Info": "api-usage=42/15000"}
        if request.url.path.endswith("/composite/sobjects/Contact/TIMS_Customer_ID__c"):
            body = json.loads(request.content)
            results = [{"id": f"003{i:015d}", "success": True, "created": True, "errors": []}
                       if r.get("LastName") else
                       {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                                                      "message": "Required fields are missing: [LastName]",
                                                      "fields": ["LastName"]}]}
                       for i, r in enumerate(body["records"])]
            return httpx.Response(200, json=results, headers=headers)
        if request.url.path.endswith("/query"):
            return httpx.Response(200, json={"done": False, "totalSize": 3, "nextRecordsUrl": "/services/data/v62.0/query/01g-2",
                                             "records": [{"attributes": {}, "Id": "1"}, {"attributes": {}, "Id": "2"}]}, headers=headers)
        if request.url.path.endswith("/query/01g-2"):
            return httpx.Response(200, json={"done": True, "totalSize": 3, "records": [{"Id": "3"}]}, headers=headers)
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": "nope"}])


def make(org: FakeOrg, **overrides) -> SalesforceRest:
    config = SalesforceConfig(login_url=LOGIN, auth_flow=AuthFlow.client_credentials, client_id="cid",
                              client_secret="s3cret", **overrides)
    http = httpx.AsyncClient(transport=httpx.MockTransport(org.handler))
    fast = RetryPolicy(base_delay=0.001, max_delay=0.01)
    return SalesforceRest(config, TokenProvider(config, http=http, policy=fast), policy=fast, http=http)


async def test_every_call_is_tagged_and_usage_is_read() -> None:
    org = FakeOrg()
    client = make(org)
    rows = [row async for row in client.query("SELECT Id FROM Contact")]
    assert [r["Id"] for r in rows] == ["1", "2", "3"]
    api_calls = [r for r in org.requests if "/services/data" in r.url.path]
    assert all(r.headers["Sforce-Call-Options"] == "client=pardot-tims-connect" for r in api_calls)
    assert client.budget.usage.used == 42 and client.budget.usage.limit == 15000


async def test_expired_session_is_refreshed_once_and_the_call_retried() -> None:
    org = FakeOrg()
    client = make(org)
    await client.tokens.token()
    org.valid = set()  # the org forgets the session
    rows = [row async for row in client.query("SELECT Id FROM Contact")]
    assert len(rows) == 3
    assert org.tokens_issued == 2 and client.tokens.refreshes == 1 and client.stats.auth_refreshes == 1


async def test_collection_results_are_read_per_record() -> None:
    org = FakeOrg()
    client = make(org)
    results = await client.upsert_collection("Contact", "TIMS_Customer_ID__c",
                                             [{"LastName": "A", "TIMS_Customer_ID__c": "C1"}, {"TIMS_Customer_ID__c": "C2"}])
    assert results[0].success and results[0].created
    assert not results[1].success and results[1].errors[0].code == "REQUIRED_FIELD_MISSING"
    assert not results[1].retryable
    with pytest.raises(ValueError):
        await client.upsert_collection("Contact", "TIMS_Customer_ID__c", [{}] * 201)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]), RetryableError),
        (httpx.Response(400, json=[{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]), RetryableError),
        (httpx.Response(403, json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentRequests"}]), RetryableError),
        (httpx.Response(400, json=[{"errorCode": "INVALID_FIELD", "message": "No such column"}]), FatalError),
    ],
)
async def test_errors_are_translated(response: httpx.Response, error: type[Exception]) -> None:
    org = FakeOrg()
    client = make(org)
    client.policy = RetryPolicy(max_attempts=1)
    await client.tokens.token()
    org.fail_next = [response]
    with pytest.raises(error) as raised:
        await client.request("GET", "limits")
    assert raised.value.code == response.json()[0]["errorCode"]


async def test_a_refused_login_is_fatal_and_hides_the_secret() -> None:
    def refuse(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_client", "error_description": "invalid client credentials"})

    config = SalesforceConfig(login_url=LOGIN, auth_flow=AuthFlow.client_credentials, client_id="cid", client_secret="s3cret")
    provider = TokenProvider(config, http=httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    with pytest.raises(FatalError) as raised:
        await provider.token()
    assert "invalid_client" in str(raised.value) and "s3cret" not in str(raised.value)
    assert provider.failures == 1
    assert "s3cret" not in repr(config)


async def test_jwt_bearer_assertion_is_signed_with_the_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    seen: dict[str, str] = {}

    def token(request: httpx.Request) -> httpx.Response:
        seen.update(urllib.parse.parse_qsl(request.content.decode()))
        return httpx.Response(200, json={"access_token": "tok-VALUE-42", "instance_url": INSTANCE, "id": f"{LOGIN}/id/00D/005"})

    config = SalesforceConfig(login_url=LOGIN, client_id="consumer-key", username="int@example.com", private_key=pem)
    provider = TokenProvider(config, http=httpx.AsyncClient(transport=httpx.MockTransport(token)))
    got = await provider.token()
    claims = jwt.decode(seen["assertion"], key.public_key(), algorithms=["RS256"], audience=LOGIN)
    assert claims["iss"] == "consumer-key" and claims["sub"] == "int@example.com"
    assert seen["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert (got.org_id, got.user_id) == ("00D", "005")
    assert "tok-VALUE-42" not in repr(got)


def test_config_names_what_a_flow_is_missing() -> None:
    with pytest.raises(ValidationError, match="jwt needs username, private_key or private_key_file"):
        SalesforceConfig(client_id="x")
    with pytest.raises(ValidationError, match="client_credentials needs client_secret"):
        SalesforceConfig(client_id="x", auth_flow=AuthFlow.client_credentials)
    with pytest.raises(ValidationError, match="api_version"):
        SalesforceConfig(client_id="x", auth_flow=AuthFlow.refresh_token, refresh_token="r", api_version="v62")
