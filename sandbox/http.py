"""Serving one simulator's aiohttp application on loopback (shared by every sandbox server)."""

from __future__ import annotations

import ssl

from aiohttp import web

__all__ = ["serve"]


async def serve(app: web.Application, host: str, port: int, *,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0 picks a free port); returns the runner and the real base
    URL. Stop it with ``await runner.cleanup()``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    bound = runner.addresses[0][1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return runner, f"{'https' if ssl_context else 'http'}://{shown}:{bound}"
