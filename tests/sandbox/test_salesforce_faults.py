"""Injected faults and quotas, each in the error shape Salesforce's REST API gives."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

from sandbox.faults import FaultConfig

from .conftest import SfRestServer


class Api:
    """Raw calls with a valid token, to see status, headers and body as they are."""

    def __init__(self, server: SfRestServer) -> None:
        self.server = server
        self.http = server.session()
        self.headers = {"Authorization": f"Bearer {server.token()}", "Sforce-Call-Options": "client=tims-connect"}

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.http.request(method, f"{self.server.url}/services/data/v62.0/{path}",
                                 headers=self.headers, **kwargs)


@pytest.fixture
def api(sf_rest_server: SfRestServer) -> Api:
    return Api(sf_rest_server)


def always(server: SfRestServer, kind: str, **extra: Any) -> None:
    server.faults.configure(FaultConfig(error_rate=1.0, error_kinds=[kind], **extra))


def test_429_has_retry_after_and_limit_code(sf_rest_server: SfRestServer, api: Api) -> None:
    always(sf_rest_server, "429", retry_after=7)
    response = api("GET", "limits")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert response.headers["Sforce-Limit-Info"] == "api-usage=0/100000"
    assert sf_rest_server.faults.injected["429"] == 1


def test_503_is_server_unavailable(sf_rest_server: SfRestServer, api: Api, ) -> None:
    sf = sf_rest_server.client()
    always(sf_rest_server, "503")
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.Contact.create({"LastName": "x"})
    assert caught.value.status == 503
    assert caught.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf_rest_server.org.count("Contact") == 0


def test_lock_fails_single_requests_with_400(sf_rest_server: SfRestServer, api: Api) -> None:
    always(sf_rest_server, "lock")
    response = api("POST", "sobjects/Contact", json={"LastName": "x"})
    assert response.status_code == 400
    assert response.json() == [{"message": "unable to obtain exclusive access to this record",
                                "errorCode": "UNABLE_TO_LOCK_ROW"}]
    assert sf_rest_server.org.count("Contact") == 0


def test_lock_fails_each_collection_record_with_200(sf_rest_server: SfRestServer, api: Api) -> None:
    always(sf_rest_server, "lock")
    records = [{"attributes": {"type": "Contact"}, "TIMS_Customer_ID__c": f"C-{i}", "LastName": "x"} for i in range(3)]
    response = api("PATCH", "composite/sobjects/Contact/TIMS_Customer_ID__c", json={"records": records})
    assert response.status_code == 200
    assert [r["errors"][0]["statusCode"] for r in response.json()] == ["UNABLE_TO_LOCK_ROW"] * 3
    assert all(r["success"] is False for r in response.json())
    assert sf_rest_server.org.count("Contact") == 0 and sf_rest_server.changes == []
    sf_rest_server.faults.reset()
    retried = api("PATCH", "composite/sobjects/Contact/TIMS_Customer_ID__c", json={"records": records})
    assert [r["created"] for r in retried.json()] == [True] * 3


def test_limit_fault_is_concurrent_request_limit(sf_rest_server: SfRestServer) -> None:
    sf = sf_rest_server.client()
    always(sf_rest_server, "limit")
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Lead")
    assert caught.value.status == 403
    assert caught.value.content == [{"message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
                                     "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def test_downtime_refuses_api_and_login_until_it_ends(sf_rest_server: SfRestServer, api: Api) -> None:
    down = sf_rest_server.admin("POST", "/down", params={"seconds": "0.5"})
    assert down.status_code == 200
    response = api("GET", "limits")
    assert response.status_code == 503 and response.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) >= 1
    login = sf_rest_server.session().post(f"{sf_rest_server.url}/services/oauth2/token",
                                          data={"grant_type": "client_credentials", "client_id": "c"})
    assert login.status_code == 503 and login.json()["error"] == "temporarily_unavailable"
    time.sleep(0.6)
    assert api("GET", "limits").status_code == 200
    assert sf_rest_server.admin("GET", "/faults").json()["injected"]["down"] == 2


def test_paths_and_rate_pick_which_requests_fail(sf_rest_server: SfRestServer, api: Api) -> None:
    always(sf_rest_server, "503", paths=["/composite/"])
    assert api("GET", "limits").status_code == 200
    assert api("DELETE", "composite/sobjects", params={"ids": "003000000000000AAA"}).status_code == 503
    sf_rest_server.faults.configure(FaultConfig(error_rate=0.5, error_kinds=["503"], seed=7))
    statuses = [api("GET", "limits").status_code for _ in range(40)]
    assert 5 < statuses.count(503) < 35 and statuses.count(200) + statuses.count(503) == 40


def test_latency_is_applied(sf_rest_server: SfRestServer, api: Api) -> None:
    sf_rest_server.faults.configure(FaultConfig(latency_ms=250))
    started = time.monotonic()
    assert api("GET", "limits").status_code == 200
    assert time.monotonic() - started >= 0.25


def test_daily_quota_runs_out(sf_rest_factory: Callable[..., SfRestServer]) -> None:
    server = sf_rest_factory(daily_api_limit=3)
    api = Api(server)
    assert [api("GET", "limits").headers["Sforce-Limit-Info"] for _ in range(3)] == [
        "api-usage=1/3", "api-usage=2/3", "api-usage=3/3"]
    refused = api("POST", "sobjects/Contact", json={"LastName": "x"})
    assert refused.status_code == 403
    assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"
    assert server.org.count("Contact") == 0

    raised = server.admin("PUT", "/api-usage", json={"limit": 10}).json()
    assert raised["remaining"] == 7
    assert api("GET", "limits").json()["DailyApiRequests"] == {"Max": 10, "Remaining": 6}


def test_fail_first_fails_the_first_requests_whatever_the_rate(sf_rest_server: SfRestServer, api: Api) -> None:
    sf_rest_server.faults.configure(FaultConfig(error_rate=0.0, fail_first=2, error_kinds=["503"]))
    statuses = [api("GET", "limits").status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert sf_rest_server.faults.injected["503"] == 2


def test_fail_first_must_not_be_negative(sf_rest_server: SfRestServer) -> None:
    with pytest.raises(ValueError, match="fail_first"):
        sf_rest_server.faults.configure(FaultConfig(fail_first=-1))
