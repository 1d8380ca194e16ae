"""Mapping files: the shipped ones load; mistakes are reported with file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from topologies.customer_sync.cleansing import Uncleanable, clean
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR, MappingError, load_mappings
from topologies.customer_sync.preview import check, preview


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_shipped_mappings_load() -> None:
    mappings = load_mappings()
    assert {"customer_master.yaml", "lead_onboarding.yaml"} == set(mappings.files)
    assert mappings.outbound["tims.customer"].create_when is not None
    assert "ok: 2 flow files" in check(None)


@pytest.mark.parametrize(
    ("text", "line", "where", "message"),
    [
        ("flow: bad\ninbound:\n  salesforce.Contact:\n    emial: {from: Email}\n", 4, "inbound.salesforce.Contact.emial", "unknown key"),
        ("flow: bad\ninbound:\n  salesforce.Contact:\n    email: {from: Email, clean: shout}\n", 4, "inbound.salesforce.Contact.email.clean", "unknown cleanser"),
        ("flow: bad\noutbound:\n  tims.customer:\n    key: [{field: customer_id, link: tims_customer}]\n    fields:\n      name: {from: nmae}\n", 6, "outbound.tims.customer.fields.name.from", "unknown canonical field 'nmae'"),
        ("flow: bad\noutbound:\n  tims.customer:\n    key: [{field: customer_id, link: tims_customer}]\n    create_when: {field: grade, gte_grade: Z}\n", 5, "outbound.tims.customer.create_when.gte_grade", "not a grade"),
        ("flow: bad\noutbound:\n  crm.Contact:\n    fields: {}\n", 3, "outbound.crm.Contact", "<system>.<entity>"),
        ("flow: other\n", 1, "flow", "match the file name"),
        ("flow: bad\ninbound: [oops\n", 3, "(file)", "not valid YAML"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int, where: str, message: str) -> None:
    write(tmp_path, "bad.yaml", text)
    with pytest.raises(MappingError) as error:
        load_mappings(tmp_path)
    assert (error.value.file, error.value.line, error.value.where) == ("bad.yaml", line, where)
    assert message in str(error.value)
    assert str(error.value).startswith(f"bad.yaml:{line}: {where}: ")


def test_a_field_mapped_in_two_flows_is_an_error(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_MAPPING_DIR / "customer_master.yaml", tmp_path)
    write(tmp_path, "extra.yaml", "flow: extra\ninbound:\n  tims.customer:\n    email: {from: mail}\n")
    with pytest.raises(MappingError, match=r"extra.yaml:4: inbound.tims.customer.email: already mapped in customer_master.yaml"):
        load_mappings(tmp_path)


def test_preview_shows_the_onboarding_decision(tmp_path: Path) -> None:
    record = write(tmp_path, "r.json", '{"source": "pardot.prospect", "fields": {"email": "A@B.co", "score": "1,200", '
                                       '"grade": "b"}, "links": {"salesforce_contact": "003X"}}')
    out = preview(None, "lead_onboarding", str(record))
    assert '"may_create": false' in out and '"score": 1200.0' in out and '"email": "a@b.co"' in out
    with pytest.raises(ValueError, match="no flow 'nope'"):
        preview(None, "nope", str(record))


@pytest.mark.parametrize(
    ("kind", "raw", "cleaned"),
    [("number", "1,234.50", 1234.5), ("number", "12,5", 12.5), ("number", " $99 ", 99.0),
     ("phone", "(555) 123-4567", "+15551234567"), ("phone", "+44 20 7946 0958 ext 12", "+442079460958"),
     ("name", "  ADA   LOVELACE ", "Ada Lovelace"), ("name", "McDonald", "McDonald"),
     ("email", " Ada@Example.COM ", "ada@example.com"), ("upper", "net 30", "NET_30"),
     ("grade", "a-", "A-"), ("text", "   ", None)],
)
def test_cleansing(kind: str, raw: object, cleaned: object) -> None:
    assert clean(kind, raw) == cleaned


@pytest.mark.parametrize(("kind", "raw"), [("number", "twelve"), ("phone", "123"), ("email", "not-an-email"), ("grade", "Q")])
def test_cleansing_refuses_what_it_cannot_fix(kind: str, raw: str) -> None:
    with pytest.raises(Uncleanable):
        clean(kind, raw)
