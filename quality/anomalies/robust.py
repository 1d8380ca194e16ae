"""Median and MAD (median absolute deviation): a spread that a few wild values cannot drag, so
an outlier cannot hide by inflating the yardstick it is measured with (Iglewicz and Hoaglin's
modified z-score, 0.6745·(x − median)/MAD, flags beyond 3.5)."""

from __future__ import annotations

from statistics import median
from typing import Sequence

__all__ = ["modified_z", "CONSISTENCY"]

#: makes MAD estimate the standard deviation for normal data (1 / Φ⁻¹(3/4))
CONSISTENCY = 0.6745


def modified_z(value: float, history: Sequence[float], floor: float = 1e-9) -> tuple[float, float, float]:
    """(z, median, MAD) of ``value`` against ``history``; a MAD of 0 (all equal) uses ``floor``."""
    centre = median(history)
    spread = median(abs(x - centre) for x in history)
    return CONSISTENCY * (value - centre) / max(spread, floor), centre, spread
