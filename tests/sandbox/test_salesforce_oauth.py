"""The simulated org's OAuth 2.0 token endpoint: JWT bearer, client credentials, refresh token."""

from __future__ import annotations

import time
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from sandbox.faults import FaultConfig
from sandbox.salesforce.oauth import JWT_BEARER, OAuthConfig

from .conftest import SF_MY_DOMAIN, SfRestServer

CONSUMER_KEY = "3MVG9-tims-connect"
USERNAME = "sync@acme.example"


def rsa_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, str]:
    return rsa_pair()


@pytest.fixture
def jwt_server(sf_rest_factory: Callable[..., SfRestServer], keys: tuple[bytes, str]) -> SfRestServer:
    return sf_rest_factory(oauth=OAuthConfig(jwt_public_keys={CONSUMER_KEY: keys[1]}))


def assertion(private: bytes, **claims: Any) -> str:
    body = {"iss": CONSUMER_KEY, "sub": USERNAME, "aud": "https://login.salesforce.com",
            "exp": int(time.time()) + 180, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private, algorithm="RS256")


def token_request(server: SfRestServer, **form: str) -> Any:
    return server.session().post(f"{server.url}/services/oauth2/token", data=form)


def test_jwt_bearer_with_simple_salesforce(jwt_server: SfRestServer, keys: tuple[bytes, str]) -> None:
    sf = Salesforce(username=USERNAME, consumer_key=CONSUMER_KEY, privatekey=keys[0].decode(),
                    session=jwt_server.session(), version="62.0")
    assert sf.sf_instance == jwt_server.url.removeprefix("https://")
    created = sf.Lead.create({"LastName": "Jwt", "Company": "Signed"})
    user_id = jwt_server.org.users[USERNAME]
    assert jwt_server.org.get("Lead", created["id"])["CreatedById"] == user_id
    assert jwt_server.changes[-1].commit_user == user_id


def test_token_response_shape(jwt_server: SfRestServer, keys: tuple[bytes, str]) -> None:
    response = token_request(jwt_server, grant_type=JWT_BEARER, assertion=assertion(keys[0]))
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    org = jwt_server.org
    assert body["instance_url"] == jwt_server.url and body["token_type"] == "Bearer"
    assert body["id"] == f"{jwt_server.url}/id/{org.org_id}/{org.users[USERNAME]}"
    assert body["issued_at"].isdigit() and abs(int(body["issued_at"]) - time.time() * 1000) < 60_000
    assert body["access_token"].startswith(org.org_id[:15] + "!")
    assert "refresh_token" not in body
    identity = jwt_server.session().get(body["id"], headers={"Authorization": f"Bearer {body['access_token']}"})
    assert identity.json()["username"] == USERNAME and identity.json()["organization_id"] == org.org_id


@pytest.mark.parametrize("claims, error, description", [
    ({"aud": "https://evil.example.com"}, "invalid_grant", "audience is invalid"),
    ({"exp": int(time.time()) - 10}, "invalid_grant", "invalid assertion"),
    ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
    ({"sub": None}, "invalid_grant", "invalid assertion"),
])
def test_jwt_bearer_refusals(jwt_server: SfRestServer, keys: tuple[bytes, str], claims: dict[str, Any],
                             error: str, description: str) -> None:
    response = token_request(jwt_server, grant_type=JWT_BEARER, assertion=assertion(keys[0], **claims))
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_jwt_signed_by_another_key_is_refused(jwt_server: SfRestServer) -> None:
    stranger, _ = rsa_pair()
    response = token_request(jwt_server, grant_type=JWT_BEARER, assertion=assertion(stranger))
    assert response.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}
    garbage = token_request(jwt_server, grant_type=JWT_BEARER, assertion="not.a.jwt")
    assert garbage.status_code == 400 and garbage.json()["error"] == "invalid_grant"
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        Salesforce(username=USERNAME, consumer_key=CONSUMER_KEY, privatekey=stranger.decode(),
                   session=jwt_server.session())
    assert failed.value.code == "invalid_grant"


def test_client_credentials_with_required_clients(sf_rest_factory: Callable[..., SfRestServer]) -> None:
    server = sf_rest_factory(oauth=OAuthConfig(required_clients={"tims-connect": "s3cret"}))
    sf = Salesforce(consumer_key="tims-connect", consumer_secret="s3cret", domain=SF_MY_DOMAIN,
                    session=server.session(), version="62.0")
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    assert server.org.sessions[sf.session_id].user_id == server.org.integration_user_id

    wrong = token_request(server, grant_type="client_credentials", client_id="tims-connect", client_secret="nope")
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}
    unknown = token_request(server, grant_type="client_credentials", client_id="who", client_secret="s3cret")
    assert unknown.json() == {"error": "invalid_client_id", "error_description": "client identifier invalid"}
    other = token_request(server, grant_type="password", username="u", password="p")
    assert other.json() == {"error": "unsupported_grant_type", "error_description": "grant type not supported"}


def test_refresh_token_grant(sf_rest_server: SfRestServer) -> None:
    refresh = sf_rest_server.org.issue_refresh_token("tims-connect", "marketing@acme.example")
    response = token_request(sf_rest_server, grant_type="refresh_token", refresh_token=refresh,
                             client_id="tims-connect", client_secret="anything")
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert body["id"].endswith("/" + sf_rest_server.org.users["marketing@acme.example"])
    assert sf_rest_server.client(body["access_token"]).query("SELECT COUNT() FROM Lead")["totalSize"] == 0

    via_admin = sf_rest_server.admin("POST", "/refresh-tokens", json={"client_id": "c2", "username": "x@y.z"})
    assert token_request(sf_rest_server, grant_type="refresh_token",
                         refresh_token=via_admin.json()["refresh_token"]).status_code == 200
    bad = token_request(sf_rest_server, grant_type="refresh_token", refresh_token="nope")
    assert bad.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def test_expired_revoked_and_missing_tokens_get_401(sf_rest_server: SfRestServer) -> None:
    token = sf_rest_server.token()
    session = sf_rest_server.session()
    url = f"{sf_rest_server.url}/services/data/v62.0/limits"
    assert session.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200

    sf_rest_server.faults.configure(FaultConfig(token_ttl=0))
    expired = session.get(url, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    with pytest.raises(SalesforceExpiredSession):
        sf_rest_server.client(token).limits()
    sf_rest_server.faults.reset()

    assert session.get(url, headers={"Authorization": "Bearer 00Dxx!made-up"}).status_code == 401
    no_header = session.get(url)
    assert no_header.status_code == 401 and no_header.json()[0]["errorCode"] == "INVALID_AUTH_HEADER"

    assert sf_rest_server.admin("POST", "/expire-tokens").status_code == 200
    assert session.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    time.sleep(0.01)
    fresh = sf_rest_server.token()
    assert session.get(url, headers={"Authorization": f"OAuth {fresh}"}).status_code == 200

    revoke = session.post(f"{sf_rest_server.url}/services/oauth2/revoke", data={"token": fresh})
    assert revoke.status_code == 200
    assert session.get(url, headers={"Authorization": f"Bearer {fresh}"}).status_code == 401
    assert sf_rest_server.org.api.used == 2  # refused calls cost nothing


def test_simple_salesforce_logs_in_again_after_expiry(jwt_server: SfRestServer, keys: tuple[bytes, str]) -> None:
    sf = Salesforce(username=USERNAME, consumer_key=CONSUMER_KEY, privatekey=keys[0].decode(),
                    session=jwt_server.session(), version="62.0")
    first = sf.session_id
    jwt_server.faults.expire_tokens()
    time.sleep(0.01)
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    assert sf.session_id != first
