"""Console users, roles and password hashes (docs/adr/0031).

Users come from ``CONNECT_CONSOLE_USERS`` (or ``CONNECT_CONSOLE_USERS_FILE``): JSON mapping each
name to ``{"role": "viewer" | "operator", "password": "<hash>"}``. A hash is
``scrypt$<n>$<r>$<p>$<salt>$<key>`` (base64), made by ``stream-app console hash-password``;
hashlib's scrypt needs no extra package and is memory-hard. Plain passwords are never stored.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Role", "User", "UsersError", "hash_password", "verify_password", "parse_users", "Users"]

#: scrypt cost: 2**14 × 8 × 128 bytes = 16 MiB and some 50 ms per login on our machines
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


class UsersError(ValueError):
    """CONNECT_CONSOLE_USERS is not usable; the message says why, never what a hash is."""


class Role(str, enum.Enum):
    viewer = "viewer"
    operator = "operator"


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def operator(self) -> bool:
        return self.role is Role.operator


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (compared in constant time)."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r),
                             p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _check_hash(name: str, encoded: Any) -> str:
    parts = encoded.split("$") if isinstance(encoded, str) else []
    if len(parts) != 6 or parts[0] != "scrypt" or not all(part.isdigit() for part in parts[1:4]):
        raise UsersError(f"CONNECT_CONSOLE_USERS: user {name!r}: password must be a hash from "
                         "`stream-app console hash-password`")
    return str(encoded)


class Users:
    """The console's users: name → (role, password hash)."""

    def __init__(self, entries: Mapping[str, tuple[Role, str]]) -> None:
        self._entries = dict(entries)
        # a login for an unknown name costs what a known one costs (no timing hint of who exists)
        self._decoy = hash_password(secrets.token_urlsafe(16))

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, name: str, password: str) -> User | None:
        role, encoded = self._entries.get(name, (None, self._decoy))
        ok = verify_password(password, encoded)
        return User(name, role) if ok and role is not None else None

    def role_of(self, name: str) -> Role | None:
        entry = self._entries.get(name)
        return entry[0] if entry else None


def parse_users(text: str | None) -> Users:
    if not text:
        raise UsersError("CONNECT_CONSOLE_USERS is not set: the console needs at least one user "
                         "(README, Console)")
    try:
        raw = json.loads(text)
    except ValueError:
        raise UsersError("CONNECT_CONSOLE_USERS: not valid JSON") from None
    if not isinstance(raw, dict) or not raw:
        raise UsersError('CONNECT_CONSOLE_USERS: expected {"name": {"role": ..., "password": ...}, ...}')
    entries: dict[str, tuple[Role, str]] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise UsersError(f"CONNECT_CONSOLE_USERS: user {name!r}: expected role and password")
        try:
            role = Role(entry.get("role"))
        except ValueError:
            raise UsersError(f"CONNECT_CONSOLE_USERS: user {name!r}: role must be viewer or operator") from None
        entries[str(name)] = (role, _check_hash(name, entry.get("password")))
    return Users(entries)
