"""Schemathesis hooks for the TIMS contract fuzz (tests/sandbox/test_tims_contract_fuzz.py loads
them through ``SCHEMATHESIS_HOOKS``).

Schemathesis' ``positive_data_acceptance`` wants every schema-valid request accepted. A schema
describes shape, not state: a valid request can still meet a stale version (412
``version_conflict``), carry a cursor this server never issued (400 ``invalid_cursor``) or name
a record that does not exist or a value another record holds (422 whose every field error is
``unknown_reference`` or ``duplicate_value``). The contract declares
those refusals (docs/adr/0018), so this check lets exactly them through and defers to the
built-in check for everything else; a 422 for a shape the schema allows still fails.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

STATE_FIELD_ERRORS = frozenset({"unknown_reference", "duplicate_value"})


def refused_for_state(status: int, body: Any) -> bool:
    """Whether an error answer refuses a request for the records it met, not for its shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if status not in (400, 412, 422) or not isinstance(error, dict):
        return False
    if status in (400, 412):
        return error.get("code") == {400: "invalid_cursor", 412: "version_conflict"}[status]
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    errors = details.get("errors") or []
    return bool(errors) and all(isinstance(e, dict) and e.get("code") in STATE_FIELD_ERRORS for e in errors)


@schemathesis.check
def positive_data_acceptance_unless_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """The built-in check, minus the state refusals the contract declares."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if refused_for_state(response.status_code, body):
        return None
    return positive_data_acceptance(ctx, response, case)
