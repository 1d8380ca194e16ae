"""Start every simulator together: one Salesforce org (REST + OAuth, Pub/Sub CDC), Pardot, TIMS,
a Shopify shop.

The org's writes feed its event bus; the Pub/Sub server and Pardot accept the org's OAuth tokens,
as the real Pardot accepts Salesforce tokens. Each server has its own :class:`Faults`
(``/__admin/faults`` on each HTTP server; the Pub/Sub server's under ``/__admin/pubsub/`` on the
Salesforce REST server, together with the CDC admin routes ``/__admin/cdc/...``).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.faults import Faults, admin_routes
from sandbox.http import serve
from sandbox.pardot import PardotStore
from sandbox.pardot import start_server as start_pardot
from sandbox.salesforce import eventbus as eventbus_module
from sandbox.salesforce.eventbus import EventBus
from sandbox.salesforce.oauth import OAuthConfig, token_checker
from sandbox.salesforce.org import Org
from sandbox.salesforce.pubsub import start_pubsub_server
from sandbox.salesforce.rest import create_app as create_rest_app
from sandbox.shop import ACCESS_TOKEN as SHOP_ACCESS_TOKEN
from sandbox.shop import ShopServer
from sandbox.shop import start_server as start_shop
from sandbox.tims import TimsStore
from sandbox.tims import start_server as start_tims

__all__ = ["DEFAULT_PORTS", "Sandbox", "port_is_free", "start_sandbox", "serve_forever", "PARDOT_BUSINESS_UNIT", "TIMS_API_KEY"]

DEFAULT_PORTS = {"salesforce-rest": 8090, "salesforce-pubsub": 7443, "pardot": 8091, "tims": 8092, "shop": 8094}
PARDOT_BUSINESS_UNIT = "0Uv000000000001AAA"
TIMS_API_KEY = "tims-sandbox-key"


@dataclass
class Sandbox:
    org: Org
    bus: EventBus
    pardot: PardotStore
    tims: TimsStore
    shop: ShopServer
    faults: dict[str, Faults]
    urls: dict[str, str]
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)
    _grpc: Any = field(default=None, repr=False)

    def lines(self) -> list[str]:
        return [f"{name:<18} {url}" for name, url in self.urls.items()]

    def worker_env(self) -> dict[str, str]:
        """The settings a worker or source needs to talk to this sandbox."""
        return {
            "CONNECT_SALESFORCE_LOGIN_URL": self.urls["salesforce-rest"],
            "CONNECT_SALESFORCE_AUTH_FLOW": "client_credentials",
            "CONNECT_SALESFORCE_CLIENT_ID": "sandbox-client",
            "CONNECT_SALESFORCE_CLIENT_SECRET": "sandbox-secret",
            "CONNECT_SALESFORCE_PUBSUB_ENDPOINT": self.urls["salesforce-pubsub"].removeprefix("grpc://"),
            "CONNECT_SALESFORCE_PUBSUB_TLS": "false",
            "CONNECT_PARDOT_BASE_URL": self.urls["pardot"],
            "CONNECT_PARDOT_BUSINESS_UNIT_ID": PARDOT_BUSINESS_UNIT,
            "CONNECT_TIMS_BASE_URL": self.urls["tims"],
            "CONNECT_TIMS_API_KEY": TIMS_API_KEY,
            "CONNECT_SHOP_SHOP_URL": self.urls["shop"],
            "CONNECT_SHOP_ACCESS_TOKEN": SHOP_ACCESS_TOKEN,
        }

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(1)
        for runner in reversed(self._runners):
            await runner.cleanup()


def _check_free(host: str, ports: dict[str, int]) -> None:
    """OSError(EADDRINUSE) naming the server whose port is taken, before any server starts
    (gRPC would otherwise print its own low-level complaint first)."""
    taken: dict[int, str] = {}
    for name, port in ports.items():
        if port == 0:
            continue
        if port in taken:
            raise OSError(errno.EADDRINUSE, f"port {port} is given to both {taken[port]} and {name}")
        taken[port] = name
        if not port_is_free(host, port):
            raise OSError(errno.EADDRINUSE, f"port {port} on {host} ({name}) is in use")


def port_is_free(host: str, port: int) -> bool:
    """Could a server listen on ``host:port`` now?"""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def start_sandbox(host: str = "127.0.0.1", ports: dict[str, int] | None = None,
                        keepalive_seconds: float = 270.0) -> Sandbox:
    """Start every server on :data:`DEFAULT_PORTS`, or on ``ports`` where given: a server that
    ``ports`` leaves out gets a free port then (0 picks one), so callers written before a server
    was added never collide on its fixed port when they run side by side."""
    chosen = dict(DEFAULT_PORTS) if ports is None else {name: ports.get(name, 0) for name in DEFAULT_PORTS}
    _check_free(host, chosen)
    faults = {name: Faults() for name in chosen}
    org = Org()
    # every object of the org has change events from the start (a subscriber may come first)
    bus = EventBus(org.entities, describe=org.describe)
    org.listener = bus
    oauth = OAuthConfig()
    check_token = token_checker(org, faults["salesforce-rest"], oauth)

    sandbox = Sandbox(org, bus, PardotStore(), TimsStore(), ShopServer(faults=faults["shop"]), faults, {})
    try:
        grpc_server, pubsub_address = await start_pubsub_server(
            host, chosen["salesforce-pubsub"], bus, check_token, faults["salesforce-pubsub"],
            keepalive_seconds=keepalive_seconds, tenant_id=org.org_id)
        sandbox._grpc = grpc_server

        rest_app = create_rest_app(org, faults["salesforce-rest"], oauth=oauth)
        pubsub_admin = web.Application()
        pubsub_admin.add_routes(admin_routes(faults["salesforce-pubsub"]))
        rest_app.add_subapp("/__admin/pubsub/", pubsub_admin)
        rest_app.add_routes(eventbus_module.admin_routes(bus))
        runner, rest_url = await serve(rest_app, host, chosen["salesforce-rest"])
        sandbox._runners.append(runner)

        runner, pardot_url = await start_pardot(host, chosen["pardot"], sandbox.pardot, faults["pardot"],
                                                token_validator=check_token)
        sandbox._runners.append(runner)
        runner, tims_url = await start_tims(host, chosen["tims"], sandbox.tims, faults["tims"])
        sandbox._runners.append(runner)
        runner, shop_url = await start_shop(host, chosen["shop"], sandbox.shop)
        sandbox._runners.append(runner)
    except BaseException:
        await sandbox.stop()
        raise
    sandbox.urls = {"salesforce-rest": rest_url, "salesforce-pubsub": f"grpc://{pubsub_address}",
                    "pardot": pardot_url, "tims": tims_url, "shop": shop_url}
    return sandbox


async def serve_forever(sandbox: Sandbox) -> None:
    """Serve until SIGTERM or SIGINT, then stop every server cleanly."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()

