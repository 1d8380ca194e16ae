"""Fixtures for the sandbox servers.

Salesforce REST (``sf_rest_*``): the server runs on its own event loop in a background thread,
because simple-salesforce (the third-party client the tests drive it with) is synchronous. It
serves TLS with a throwaway certificate, since simple-salesforce only speaks https, and the
client's requests session sends login.salesforce.com / the My Domain host to the simulator.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

from sandbox.faults import Faults
from sandbox.salesforce.changes import RecordChange
from sandbox.salesforce.org import Org
from sandbox.salesforce.rest import self_signed_tls, start_rest_server

SF_CLIENT_ID = "tims-connect"
SF_MY_DOMAIN = "acme.my"  # simple-salesforce turns it into https://acme.my.salesforce.com


class SfChangeRecorder:
    """A ChangeListener that keeps what it is given."""

    def __init__(self) -> None:
        self.changes: list[RecordChange] = []

    def publish(self, change: RecordChange) -> None:
        self.changes.append(change)


class _ToSimulator(HTTPAdapter):
    """Sends requests for a Salesforce host to the simulator instead."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        request.url = self.target + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@dataclass
class SfRestServer:
    url: str
    org: Org
    faults: Faults
    recorder: SfChangeRecorder
    cert: Path
    _sessions: list[requests.Session] = field(default_factory=list)

    @property
    def changes(self) -> list[RecordChange]:
        return self.recorder.changes

    def session(self) -> requests.Session:
        """A requests session that trusts the simulator and reaches it for Salesforce's hosts."""
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE / proxies from the environment win
        s.verify = str(self.cert)
        for host in ("https://login.salesforce.com", "https://test.salesforce.com",
                     f"https://{SF_MY_DOMAIN}.salesforce.com"):
            s.mount(host, _ToSimulator(self.url))
        self._sessions.append(s)
        return s

    def token(self, client_id: str = SF_CLIENT_ID, secret: str = "secret") -> str:
        response = self.session().post(f"{self.url}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
        response.raise_for_status()
        return str(response.json()["access_token"])

    def client(self, token: str | None = None, version: str = "62.0") -> Salesforce:
        """simple-salesforce on an access token (as the client credentials flow gives it)."""
        return Salesforce(instance_url=self.url, session_id=token or self.token(), session=self.session(),
                          version=version)

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session().request(method, f"{self.url}/__admin{path}", **kwargs)

    def close(self) -> None:
        for s in self._sessions:
            s.close()


class _ServerThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sf-rest-sandbox", daemon=True)
        self.thread.start()
        self.runners: list[Any] = []

    def run(self, coro: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        for runner in self.runners:
            self.run(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def sf_rest_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return self_signed_tls(tmp_path_factory.mktemp("sf-tls"))


@pytest.fixture
def sf_rest_factory(sf_rest_tls: tuple[Any, Path]) -> Iterator[Callable[..., SfRestServer]]:
    """``start(**create_app options)`` → a running simulator with a fresh org and change recorder."""
    thread = _ServerThread()
    servers: list[SfRestServer] = []
    context, cert = sf_rest_tls

    def start(*, daily_api_limit: int = 100_000, **options: Any) -> SfRestServer:
        recorder = SfChangeRecorder()
        org = Org(listener=recorder, daily_api_limit=daily_api_limit)
        faults = Faults()
        runner, url = thread.run(start_rest_server("127.0.0.1", 0, org, faults, ssl_context=context, **options))
        thread.runners.append(runner)
        server = SfRestServer(url, org, faults, recorder, cert)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()
        thread.stop()


@pytest.fixture
def sf_rest_server(sf_rest_factory: Callable[..., SfRestServer]) -> SfRestServer:
    return sf_rest_factory()


@pytest.fixture
def sf_rest_client(sf_rest_server: SfRestServer) -> Salesforce:
    return sf_rest_server.client()
