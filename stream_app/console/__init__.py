"""The ops console (``stream-app console``, docs/adr/0031): server-rendered pages for dead
letters, customers, flows and conflicts, behind a login.

This module holds only what the worker needs to link to the console (it imports no template
engine); the server is :mod:`stream_app.console.server`.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["console_url", "install_link", "LINK_PATH"]

#: the worker's web server answers this path with a redirect to the console
LINK_PATH = "/console"


def console_url(settings: "Settings") -> str:
    """The console's address as a browser reaches it."""
    if settings.console_url:
        return settings.console_url.rstrip("/") + "/"
    host = "127.0.0.1" if settings.console_host in ("0.0.0.0", "::", "") else settings.console_host
    return f"http://{host}:{settings.console_port}/"


def install_link(app: Any) -> None:
    """``/console`` on the worker's web server: a redirect to the console (docs/adr/0031)."""
    target = console_url(app.settings)

    body = f'<!doctype html><title>Console</title><p><a href="{escape(target)}">The ops console</a></p>'

    async def console(view: Any, request: Any) -> Any:
        return view.html(body, status=302, headers={"Location": target})

    app.page(LINK_PATH)(console)
