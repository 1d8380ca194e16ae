"""Simulated Pardot (Account Engagement) API v5: prospects, lists, list memberships, visitor
activities and website form handlers, with Pardot's headers, limits, error codes and faults.

Typical use::

    store = PardotStore()
    runner, url = await start_server("127.0.0.1", 0, store, Faults())
    store.submit_form("ada@example.com", {"firstName": "Ada"})  # a website lead
"""

from sandbox.pardot.objects import DEFAULT_CUSTOM_FIELDS, ERRORS, PardotError
from sandbox.pardot.server import BUSINESS_UNIT_PATTERN, PardotConfig, create_app, start_server
from sandbox.pardot.store import API_USER_ID, FORM_HANDLER_ACTIVITY, UI_USER_ID, PardotStore

__all__ = [
    "API_USER_ID",
    "BUSINESS_UNIT_PATTERN",
    "DEFAULT_CUSTOM_FIELDS",
    "ERRORS",
    "FORM_HANDLER_ACTIVITY",
    "PardotConfig",
    "PardotError",
    "PardotStore",
    "UI_USER_ID",
    "create_app",
    "start_server",
]
