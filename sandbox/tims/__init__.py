"""Simulated TIMS ERP: the contract in docs/tims-openapi.yaml, served over HTTP with a change
feed, signed webhooks and fault injection.

Typical use::

    store = TimsStore()
    runner, url = await start_server("127.0.0.1", 0, store, Faults())
    store.upsert_customer("001xx0000012345AAA", name="Acme Welding")  # a TIMS user's edit
"""

from sandbox.tims.contract import DEFAULT_CONTRACT_PATH, Contract, FieldError
from sandbox.tims.server import DEFAULT_API_KEYS, TimsConfig, create_app, start_server
from sandbox.tims.store import UI_USER, Change, RecordInvalid, RecordNotFound, TimsStore, VersionConflict
from sandbox.tims.webhook import sign

__all__ = [
    "Change",
    "Contract",
    "DEFAULT_API_KEYS",
    "DEFAULT_CONTRACT_PATH",
    "FieldError",
    "RecordInvalid",
    "RecordNotFound",
    "TimsConfig",
    "TimsStore",
    "UI_USER",
    "VersionConflict",
    "create_app",
    "sign",
    "start_server",
]
