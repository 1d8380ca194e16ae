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


def test_phones_are_masked_as_phones_and_other_numbers_stay() -> None:
    for phone, shown in [("+44 20 7946 0958", "***58"), ("(415) 555-0134", "***34"), ("555.010.9999", "***99"),
                         ("01 23 45 67 89", "***89")]:
        assert redact_text(f"call {phone}.") == f"call {shown}."
    for text in ["0000000000000008",                        # a replay id, an offset: a bare run of digits
                 "Contact 0035g00000XyZ12AAC, Account 001000000000001AAA",  # Salesforce ids, leading zeros
                 "Timer woke up too late, with a drift of 1.2345", "drift of 0.317459",  # decimals
                 "commit 1733472000000 at 2026-11-26 10:00:00", "peer 127.0.0.1:40217"]:
        assert redact_text(text) == text
