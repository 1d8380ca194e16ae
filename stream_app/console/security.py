"""Login, roles and cross-site protection for every console request (docs/adr/0031).

- The session lives in a cookie encrypted and signed with Fernet (aiohttp-session's
  ``EncryptedCookieStorage``): HttpOnly, SameSite=Strict, Secure when configured, and a login
  older than ``CONNECT_CONSOLE_SESSION_MAX_AGE`` is over whatever the cookie says.
- Every page but the login page and the static files needs a login; operator actions need the
  operator role, looked up again on each request (a user removed from the settings is out).
- Every POST must come from the console's own origin (``Origin``, else ``Referer``; a browser's
  ``Sec-Fetch-Site: cross-site`` is refused outright) and carry the session's CSRF token (a
  form field ``csrf_token`` or the header ``X-CSRF-Token``), compared in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import get_session, new_session
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from stream_app.console.auth import Role, User, Users

__all__ = ["install", "login", "logout", "csrf_token", "current_user", "require_operator", "PUBLIC_PREFIXES", "USER",
           "LoginThrottle", "TooManyFailures",
           "COOKIE_NAME"]

COOKIE_NAME = "connect_console"
PUBLIC_PREFIXES = ("/login", "/static/")
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_USERS = web.AppKey("users", Users)
_MAX_AGE = web.AppKey("max_age", int)
_ORIGINS = web.AppKey("origins", frozenset)
_THROTTLE = web.AppKey("throttle", object)
#: the logged-in user of a request (set by the guard)
USER = web.RequestKey("user", User)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fernet_key(secret: str | None) -> bytes:
    """A Fernet key from the configured secret (any length), or a random one."""
    if not secret:
        return Fernet.generate_key()
    return base64.urlsafe_b64encode(hashlib.sha256(b"connect-console-session:" + secret.encode()).digest())


def install(app: web.Application, users: Users, *, secret: str | None, max_age: int, secure: bool,
            origins: frozenset[str] = frozenset()) -> None:
    """Sessions and the guard on ``app``; ``origins`` are extra origins a POST may come from (the
    console's public URL behind a proxy), beside the one the request itself names."""
    app[_USERS], app[_MAX_AGE], app[_ORIGINS] = users, max_age, origins
    app[_THROTTLE] = LoginThrottle()
    storage = EncryptedCookieStorage(Fernet(fernet_key(secret)), cookie_name=COOKIE_NAME, max_age=max_age, secure=secure,
                                     httponly=True, samesite="Strict")
    setup_session(app, storage)
    app.middlewares.append(_headers)
    app.middlewares.append(_guard)


def _same_origin(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return False
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True  # not a browser form post (a browser names the origin); the CSRF token decides
    parts = urlsplit(source)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin == f"{request.scheme}://{request.host}" or origin in request.app[_ORIGINS]


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


async def _csrf_ok(request: web.Request) -> bool:
    session = await get_session(request)
    expected = session.get("csrf")
    if not expected:
        return False
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = (await request.post()).get("csrf_token")
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), str(expected).encode())


async def current_user(request: web.Request) -> User | None:
    session = await get_session(request)
    name, at = session.get("user"), session.get("at", 0)
    if not isinstance(name, str) or time.time() - float(at) > request.app[_MAX_AGE]:
        return None
    role = request.app[_USERS].role_of(name)
    return User(name, role) if role is not None else None


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in _UNSAFE:
        if not _same_origin(request):
            raise web.HTTPForbidden(text="Refused: a form posted from another site.")
        if not await _csrf_ok(request):
            raise web.HTTPForbidden(text="Refused: the form's security token is missing or stale; reload the page.")
    if request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    user = await current_user(request)
    if user is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"/login?next={request.rel_url.path_qs}" if request.path != "/" else "/login")
        raise web.HTTPUnauthorized(text="Log in first.")
    request[USER] = user
    return await handler(request)


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _secure_headers(response)
        raise
    _secure_headers(response)
    return response


def _secure_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")


class TooManyFailures(Exception):
    """Logins for this name from this address are paused; ``seconds`` until they are taken again."""

    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class LoginThrottle:
    """After ``limit`` failed logins for one name from one address within ``window`` seconds,
    further attempts are refused until the window has passed (per name *and* address, so a
    stranger cannot lock a user out from elsewhere)."""

    def __init__(self, limit: int = 5, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[tuple[str, str], list[float]] = {}

    def check(self, name: str, address: str) -> None:
        now = self.clock()
        recent = [at for at in self._failures.get((name, address), []) if now - at < self.window]
        self._failures[(name, address)] = recent
        if len(recent) >= self.limit:
            raise TooManyFailures(int(self.window - (now - recent[0])) + 1)

    def failed(self, name: str, address: str) -> None:
        if len(self._failures) > 100_000:  # bounded: forget the oldest half
            for key in list(self._failures)[:50_000]:
                del self._failures[key]
        self._failures.setdefault((name, address), []).append(self.clock())

    def succeeded(self, name: str, address: str) -> None:
        self._failures.pop((name, address), None)


async def login(request: web.Request, name: str, password: str) -> User | None:
    """Check the credentials; on success a new session (a fresh id and CSRF token: no fixation).
    Raises :class:`TooManyFailures` while logins for the name from this address are paused."""
    throttle, address = request.app[_THROTTLE], request.remote or "?"
    throttle.check(name, address)
    # scrypt takes tens of milliseconds of CPU: off the event loop
    user = await asyncio.to_thread(request.app[_USERS].authenticate, name, password)
    if user is None:
        throttle.failed(name, address)
        return None
    throttle.succeeded(name, address)
    session = await new_session(request)
    session["user"], session["at"], session["csrf"] = user.name, time.time(), secrets.token_urlsafe(32)
    return user


async def logout(request: web.Request) -> None:
    session = await get_session(request)
    session.invalidate()


def require_operator(request: web.Request) -> User:
    user = request[USER]
    if user.role is not Role.operator:
        raise web.HTTPForbidden(text="Only operators may do this.")
    return user
