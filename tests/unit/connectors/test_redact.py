"""Emails and phone numbers never reach a log line in clear."""

from __future__ import annotations

from connectors.redact import mask_email, mask_phone, redact_fields, redact_text


def test_masks() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email("not-an-email") == "***"
    assert mask_phone("+44 20 7946 0018") == "***18"
    assert mask_phone("1") == "***"


def test_redact_fields_by_name_and_by_shape() -> None:
    fields = {
        "Email": "jane.doe@example.com", "MobilePhone": "+1 (555) 010-9999", "Fax": "555 0100 200",
        "Description": "call jane.doe@example.com or +1 555 010 9999", "LastName": "Doe", "pi__score__c": 42,
        "Nested": {"pi__email__c": "x@y.org"},
    }
    safe = redact_fields(fields)
    assert safe["Email"] == "j***@example.com"
    assert safe["MobilePhone"] == "***99" and safe["Fax"] == "***00"
    assert "jane.doe" not in safe["Description"] and "9999" not in safe["Description"]
    assert safe["LastName"] == "Doe" and safe["pi__score__c"] == 42
    assert safe["Nested"] == {"pi__email__c": "x***@y.org"}
    assert fields["Email"] == "jane.doe@example.com"  # the input is not changed
    assert redact_text("no personal data, order 12") == "no personal data, order 12"
