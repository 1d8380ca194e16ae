"""Every flow with a mapping file reloads it while running (the console's save, docs/adr/0037):
the new file is validated first, a wrong one keeps the mapping in use and says why."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from stream_app.app import create_app
from stream_app.settings import load_settings

#: flow → (its mapping file's setting, the shipped line, an edited line, the setting's new value)
EDITS = {
    "orders": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "products": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "activities": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "receivables": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "web_orders": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "abandoned_carts": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "shop_catalog": ("currency", "currency: USD", "currency: EUR", "EUR"),
    "lists": ("member_status", "member_status: Sent", "member_status: Responded", "Responded"),
}
ROOT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One app with every flow that has a mapping file installed, reading the site's folder."""
    folder = tmp_path_factory.mktemp("reload")
    site = folder / "site"
    site.mkdir()
    app = create_app(load_settings(store="memory://", data_dir=str(folder), flows=",".join(EDITS),
                                   mappings_dir=str(site)), sinks=False, metrics=False)
    return app, site


def _site_file(site: Path, flow: str) -> Path:
    """The flow's file in the site's folder (a copy of the shipped one, as the console's first save makes)."""
    if not (site / flow).is_dir():
        shutil.copytree(ROOT / "topologies" / flow / "mappings", site / flow)
    return site / flow / f"{flow}.yaml"


@pytest.mark.parametrize("flow", sorted(EDITS))
def test_a_flow_takes_its_edited_file_and_keeps_the_old_one_when_the_new_is_wrong(worker: tuple[Any, Path],
                                                                                  flow: str) -> None:
    app, site = worker
    running = app.parts[f"flow:{flow}"]
    setting, shipped, edited, value = EDITS[flow]
    path = _site_file(site, flow)
    assert getattr(running.mapping, setting) != value
    path.write_text(path.read_text().replace(shipped, edited))
    said = running.reload_mappings()
    assert getattr(running.mapping, setting) == value and str(site / flow) in said
    in_use = running.mapping
    good = path.read_text()
    path.write_text(good.replace(edited, f"{setting}: [not, one, value]"))
    with pytest.raises(ValueError, match=rf"{flow}\.yaml: {setting}") as refused:
        running.reload_mappings()
    assert running.mapping is in_use and "Traceback" not in str(refused.value)
    path.write_text("- a list\n- not the mapping\n")
    with pytest.raises(ValueError, match=rf"{flow}\.yaml"):
        running.reload_mappings()
    assert running.mapping is in_use
    path.write_text(good)


def test_every_flow_with_mappings_is_wired_to_the_control_topic(worker: tuple[Any, Path]) -> None:
    app, _ = worker
    reloaders = {name for name in EDITS if callable(getattr(app.parts[f"flow:{name}"], "reload_mappings", None))}
    assert reloaders == set(EDITS)


def test_the_lists_flow_rebuilds_its_list_name_pattern(worker: tuple[Any, Path]) -> None:
    app, site = worker
    lists = app.parts["flow:lists"]
    path = _site_file(site, "lists")
    good = path.read_text()
    assert lists.list_name.match("TIMS segment S1")
    path.write_text(good.replace('segment_list_name: "TIMS segment {segment_id}"', 'segment_list_name: "Seg {segment_id}"'))
    lists.reload_mappings()
    assert lists.list_name.match("Seg S1").group("segment") == "S1" and not lists.list_name.match("TIMS segment S1")
    path.write_text(good)
    lists.reload_mappings()


def test_receivables_refuses_what_only_a_restart_would_change(worker: tuple[Any, Path]) -> None:
    app, site = worker
    receivables = app.parts["flow:receivables"]
    path = _site_file(site, "receivables")
    good = path.read_text()
    path.write_text(good.replace("review_interval_seconds: 3600", "review_interval_seconds: 60"))
    with pytest.raises(ValueError, match="review_interval_seconds is taken when the worker starts.*restart"):
        receivables.reload_mappings()
    assert receivables.mapping.review_interval_seconds == 3600
    path.write_text(good)
