"""Checking and previewing an edited mapping file, and the flows drawing (docs/adr/0037)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app.console import flow_view, mapping_edit
from stream_app.settings import load_settings
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR

SHIPPED = (DEFAULT_MAPPING_DIR / "customer_master.yaml").read_text()


def settings(tmp_path: Path, mappings: Path | None = None) -> object:
    return load_settings(store="memory://", data_dir=str(tmp_path), flows="customer_sync,products",
                         **({"mappings_dir": str(mappings)} if mappings else {}))


def test_an_error_names_file_line_and_field_and_the_files_are_judged_together(tmp_path: Path) -> None:
    wrong = SHIPPED.replace("city: {from: MailingCity, clean: text}", "city: {from: MailingCity, clean: txet}")
    verdict = mapping_edit.check_text(settings(tmp_path), "customer_sync", "customer_master", wrong)
    line = wrong.splitlines().index("    city: {from: MailingCity, clean: txet}") + 1
    assert not verdict.ok
    [problem] = verdict.problems
    assert (problem.file, problem.line, problem.where) == ("customer_master.yaml", line,
                                                           "inbound.salesforce.Contact.city.clean")
    assert "unknown cleanser" in problem.message and verdict.text.startswith(f"customer_master.yaml:{line}: ")
    # a field the other flow file maps too: only the two files together say so
    twice = SHIPPED.replace("inbound:\n", "inbound:\n  pardot.prospect:\n    email: {from: email}\n", 1)
    said = mapping_edit.check_text(settings(tmp_path), "customer_sync", "customer_master", twice)
    assert not said.ok and said.problems[0].file == "lead_onboarding.yaml"
    assert "already mapped in customer_master.yaml" in said.text


def test_a_pydantic_checked_file_gets_the_line_of_the_field_it_names(tmp_path: Path) -> None:
    shipped = (Path(__file__).parents[2] / "topologies/products/mappings/products.yaml").read_text()
    wrong = shipped.replace("currency: USD", "currency: 12")
    verdict = mapping_edit.check_text(settings(tmp_path), "products", "products", wrong)
    assert not verdict.ok and verdict.problems
    assert verdict.problems[0].line == wrong.splitlines().index("currency: 12") + 1
    assert mapping_edit.check_text(settings(tmp_path), "products", "products", shipped).ok


def test_the_preview_uses_the_edited_text_not_the_file(tmp_path: Path) -> None:
    edited = SHIPPED.replace('name: {concat: [first_name, last_name], sep: " "}',
                             'name: {concat: [last_name, first_name], sep: ", "}')
    record = {"source": "salesforce", "entity": "Contact", "fields": {"FirstName": "Ada", "LastName": "Lovelace"}}
    shown = json.loads(mapping_edit.preview_text(settings(tmp_path), "customer_sync", "customer_master", edited, record))
    assert shown["outbound"]["tims.customer"]["fields"]["name"] == "Lovelace, Ada"
    assert (DEFAULT_MAPPING_DIR / "customer_master.yaml").read_text() == SHIPPED


def test_a_save_goes_to_the_site_folder_after_the_checks(tmp_path: Path) -> None:
    with pytest.raises(mapping_edit.SaveRefused, match="CONNECT_MAPPINGS_DIR"):
        mapping_edit.plan_save(settings(tmp_path), "customer_sync", "customer_master", SHIPPED,
                               mapping_edit.digest(SHIPPED))
    site = tmp_path / "site"
    site.mkdir()
    with pytest.raises(mapping_edit.SaveRefused, match="changed since you opened it"):
        mapping_edit.plan_save(settings(tmp_path, site), "customer_sync", "customer_master", SHIPPED, "stale")
    edited = SHIPPED.replace("sep: \" \"}", "sep: \"-\"}")
    plan = mapping_edit.plan_save(settings(tmp_path, site), "customer_sync", "customer_master", edited,
                                  mapping_edit.digest(SHIPPED))
    assert plan.seed_from == DEFAULT_MAPPING_DIR and '+      name: {concat: [first_name, last_name], sep: "-"}' in plan.diff
    mapping_edit.write(plan, edited)
    assert (site / "customer_sync" / "customer_master.yaml").read_text() == edited
    assert sorted(p.name for p in (site / "customer_sync").iterdir()) == ["customer_master.yaml", "lead_onboarding.yaml"]


def test_the_drawing_joins_sources_to_the_first_stage_the_stages_in_a_chain_and_the_last_to_sinks() -> None:
    flow = {"name": "customer_sync", "systems": ["salesforce", "tims"], "paused": True, "direct": ["ingest"],
            "sources": [("t.src.salesforce.Contact", 3), ("t.src.tims.customer", 0)],
            "stages": [("t.customer_sync.identify", 0), ("t.customer_sync.merge", 2)]}
    figures = [("events in · salesforce.Contact", 10, 2.5), ("commands out · tims.customer", 4, 1.0),
               ("stage merge · quarantined", 1, None)]
    drawing = flow_view.draw(flow, figures, {"t.src.salesforce.Contact": 1_000_000}, now=1_030.0)
    by_title = {box.title: box for box in drawing.boxes}
    assert [b.title for b in drawing.boxes if b.column == 1] == ["ingest", "identify", "merge"]
    assert by_title["salesforce"].lines == ["10 events in, 2.5/s", "lag 3", "last event 30 s ago"]
    assert by_title["tims"].lines[-1] == "no event yet" and not by_title["tims"].state
    assert "PAUSED" in by_title["ingest"].lines and by_title["merge"].state == "warn"
    assert by_title["tims.customer"].lines[0] == "4 commands, 1.0/s"
    assert len(drawing.edges) == 2 + 2 + 1
