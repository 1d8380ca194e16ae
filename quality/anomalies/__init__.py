"""Anomaly rules for money streams (docs/adr/0030): amounts far outside a customer's own history
or the overall distribution, duplicate payments, non-positive totals, credit-limit jumps and
payment-terms changes. A library: nothing in the stream calls it yet."""

from quality.anomalies.detector import AnomalyDetector, Settings
from quality.anomalies.events import CustomerChange, Flag, MoneyEvent

__all__ = ["AnomalyDetector", "Settings", "CustomerChange", "Flag", "MoneyEvent"]
