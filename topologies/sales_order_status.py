"""A TIMS sales order's status only moves forward (docs/adr/0021; the orders and web orders flows).

Fulfilment runs draft → open → picked → shipped → invoiced → closed; cancelled ends an order at
any point. An event is taken when it is newer than the last one taken (TIMS ``version``) and its
status does not rank below the status shown: a late, replayed or reordered event never moves an
Opportunity back. An equal rank with a newer version is taken (a tracking number added to a
shipped order).
"""

from __future__ import annotations

__all__ = ["RANK", "rank", "advances"]

RANK: dict[str, int] = {"draft": 0, "open": 1, "picked": 2, "shipped": 3, "invoiced": 4, "closed": 5, "cancelled": 6}


def rank(status: str | None) -> int:
    """A status's place; an unknown status ranks below every known one (it never wins)."""
    return RANK.get((status or "").lower(), -1)


def advances(current_status: str | None, current_version: int | None, status: str, version: int) -> bool:
    """Whether an event (``status`` at TIMS ``version``) is news for an order now at ``current_*``."""
    if rank(status) < 0:
        return False
    if current_version is not None and version <= current_version:
        return False
    return rank(status) >= rank(current_status)
