"""Editing a mapping file row by row (docs/adr/0037, addendum): the rows are written back into
the text by splicing, so untouched rows, comments and alignment stay byte for byte."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from stream_app.console import mapping_rows

ROOT = Path(__file__).parents[2]
MASTER = (ROOT / "topologies/customer_sync/mappings/customer_master.yaml").read_text()
PRODUCTS = (ROOT / "topologies/products/mappings/products.yaml").read_text()


def form_of(text: str, **changed: str) -> dict[str, str]:
    """The form as the page draws it for ``text``, with ``changed`` cells (``r3.transform``...)."""
    form = {f"r{row.index}.{column}": value for row in mapping_rows.rows_of(text)
            for column, value in row.values().items()}
    return {**form, **{name.replace("__", "."): value for name, value in changed.items()}}


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("path", sorted(ROOT.glob("topologies/*/mappings/*.yaml")), ids=lambda p: p.name)
def test_a_form_posted_as_drawn_changes_nothing(path: Path) -> None:
    text = path.read_text()
    assert mapping_rows.apply_form(text, form_of(text), "rows") == text


def test_the_rows_name_their_line_and_the_path_errors_use() -> None:
    rows = mapping_rows.rows_of(MASTER)
    city = next(r for r in rows if r.where == "inbound.salesforce.Contact.city")
    assert MASTER.splitlines()[city.line - 1] == "    city: {from: MailingCity, clean: text}"
    assert city.values() == {"source": "MailingCity", "transform": "clean: text", "target": "city", "owner": ""}
    name = next(r for r in rows if r.where == "outbound.tims.customer.fields.name")
    assert (name.source, name.transform) == ("concat: [first_name, last_name]", "sep: ' '")
    assert not city.owner_editable
    unit_price = mapping_rows.rows_of(PRODUCTS)[4]
    assert (unit_price.where, unit_price.transform, unit_price.owner) == ("fields.4", "kind: money", "tims")


def test_an_edited_row_is_the_only_line_that_changes() -> None:
    index = next(r.index for r in mapping_rows.rows_of(MASTER) if r.where == "inbound.salesforce.Contact.city")
    after = mapping_rows.apply_form(MASTER, form_of(MASTER, **{f"r{index}__transform": "clean: upper"}), "rows")
    assert changed_lines(MASTER, after) == ["-    city: {from: MailingCity, clean: text}",
                                            "+    city: {from: MailingCity, clean: upper}"]
    # the same rule written another way changes nothing
    same = form_of(MASTER, **{f"r{index}__transform": "clean:   text"})
    assert mapping_rows.apply_form(MASTER, same, "rows") == MASTER


def test_rows_are_deleted_and_added_with_the_section_s_indentation() -> None:
    phone = next(r.index for r in mapping_rows.rows_of(MASTER) if r.where == "inbound.salesforce.Contact.phone")
    deleted = mapping_rows.apply_form(MASTER, form_of(MASTER), f"delete:{phone}")
    assert changed_lines(MASTER, deleted) == ["-    phone: {from: Phone, clean: phone}"]
    added = mapping_rows.apply_form(MASTER, form_of(MASTER, **{
        "new__section": "inbound.salesforce.Account", "new__target": "website", "new__source": "Website",
        "new__transform": "clean: text"}), "add")
    assert changed_lines(MASTER, added) == ["+    website: {from: Website, clean: text}"]
    assert added.splitlines().index("    website: {from: Website, clean: text}") == \
        MASTER.splitlines().index("    company: {from: Name, clean: text}") + 1
    listed = mapping_rows.apply_form(PRODUCTS, form_of(PRODUCTS, **{
        "new__section": "fields", "new__target": "weight", "new__source": "tims: weight, salesforce: Weight__c",
        "new__owner": "tims"}), "add")
    assert changed_lines(PRODUCTS, listed) == ["+  - {name: weight, tims: weight, salesforce: Weight__c, owner: tims}"]


def test_a_listed_row_s_owner_is_edited_and_the_aligned_neighbours_stay() -> None:
    after = mapping_rows.apply_form(PRODUCTS, form_of(PRODUCTS, r4__owner="salesforce"), "rows")
    assert changed_lines(PRODUCTS, after) == [
        "-  - {name: unit_price,  tims: unit_price,  salesforce: TIMS_List_Price__c,    owner: tims, kind: money}",
        "+  - {name: unit_price, tims: unit_price, salesforce: TIMS_List_Price__c, owner: salesforce, kind: money}"]


@pytest.mark.parametrize(("cells", "said"), [
    ({"r0__transform": "clean email"}, "the transform must be written as key: value"),
    ({"r0__transform": "clean: [email"}, "the transform must be written as key: value"),
    ({"r0__source": ""}, "the source field is empty"),
    ({"r0__target": " "}, "the target field is empty"),
])
def test_a_cell_that_cannot_be_written_is_refused_for_its_row_and_the_text_stays(cells: dict[str, Any],
                                                                                  said: str) -> None:
    with pytest.raises(mapping_rows.RowsRefused) as refused:
        mapping_rows.apply_form(MASTER, form_of(MASTER, **cells), "rows")
    assert said in " ".join(refused.value.errors[0])
    assert refused.value.values[0][next(iter(cells)).split("__")[1]] == next(iter(cells.values())).strip()


def test_owners_of_the_customer_sync_are_the_flow_s_setting_not_a_row_s() -> None:
    assert not mapping_rows.rows_of(MASTER)[0].owner_editable
    # the page draws no owner cell for such a row; one posted anyway is not written
    assert mapping_rows.apply_form(MASTER, form_of(MASTER, r0__owner="tims"), "rows") == MASTER
    with pytest.raises(mapping_rows.RowsRefused, match="owners of this file's fields are the flow's setting"):
        mapping_rows.apply_form(MASTER, form_of(MASTER, new__section="inbound.salesforce.Account", new__target="website",
                                                new__source="Website", new__owner="tims"), "add")


def test_a_new_row_needs_a_section_and_a_row_to_delete_must_exist() -> None:
    with pytest.raises(mapping_rows.RowsRefused, match="choose the section"):
        mapping_rows.apply_form(MASTER, form_of(MASTER, new__section="nowhere", new__target="x", new__source="y"), "add")
    with pytest.raises(mapping_rows.RowsRefused, match="no row '999'"):
        mapping_rows.apply_form(MASTER, form_of(MASTER), "delete:999")
    with pytest.raises(ValueError, match="not valid YAML"):
        mapping_rows.rows_of("a: [b\n")
    with pytest.raises(ValueError, match="line 3 holds what a mapping cannot"):
        mapping_rows.rows_of("inbound:\n  salesforce.Contact:\n    email: !custom {from: Email}\n")


def test_the_table_puts_each_problem_next_to_its_row_and_keeps_what_was_typed() -> None:
    from stream_app.console.mapping_edit import Problem

    rows = mapping_rows.rows_of(PRODUCTS)
    by_path = Problem("products.yaml", 13, "fields.1.owner", "Input should be 'tims' or 'salesforce'")
    city = mapping_rows.rows_of(MASTER)[5]
    by_line = Problem("customer_master.yaml", city.line, "inbound.salesforce.Contact.city.clean", "unknown cleanser")
    shown = mapping_rows.table("products.yaml", PRODUCTS, [by_path], None, {})
    assert [s["row"].index for s in shown["rows"] if s["problems"]] == [1]
    assert shown["rows_of"] and shown["rows"][0]["values"] == rows[0].values()
    shown = mapping_rows.table("customer_master.yaml", MASTER, [by_line], None, {"email": "salesforce"})
    assert [s["row"].where for s in shown["rows"] if s["problems"]] == ["inbound.salesforce.Contact.city"]
    assert shown["rows"][0]["owner_shown"] == "salesforce"
    refused = mapping_rows.RowsRefused({2: ["the transform must be written as key: value"]},
                                       {2: {"source": "x", "transform": "y", "target": "z", "owner": ""}})
    shown = mapping_rows.table("customer_master.yaml", MASTER, [], refused, {})
    [problem] = shown["rows"][2]["problems"]
    assert (problem.file, problem.line, problem.where) == ("customer_master.yaml", shown["rows"][2]["row"].line,
                                                           shown["rows"][2]["row"].where)
    assert shown["rows"][2]["values"]["transform"] == "y"
    assert "not valid YAML" in mapping_rows.table("x.yaml", "a: [b\n", [], None, {})["rows_problem"]
