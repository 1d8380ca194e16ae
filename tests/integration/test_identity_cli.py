"""``stream-app identity link|train`` as a user runs it: the real command on CSV files in a
temporary folder (docs/adr/0029). No broker needed: the command connects to nothing."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from tests.support.linkage_data import FIELDS_YAML, write_files
from tests.support.worker import STREAM_APP

pytestmark = pytest.mark.integration


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAM_APP, "identity", *map(str, args)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("linkage")
    left, right, config, _ = write_files(folder, people=400, seed=11)
    return {"left": left, "right": right, "config": config, "dir": folder}


def test_link_writes_the_pairs_and_scores_them_against_the_truth(files: dict[str, Path]) -> None:
    out = files["dir"] / "pairs.csv"
    done = _run("link", "--left", files["left"], "--right", files["right"], "--config", files["config"],
                "--out", out, "--truth", "person")
    assert done.returncode == 0, done.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["left_id", "right_id", "score", "decision"]
    assert {row["decision"] for row in rows} == {"link", "review"}
    assert all(0.0 <= float(row["score"]) <= 1.0 for row in rows)
    lefts = {row["customer_id"] for row in csv.DictReader(files["left"].open())}
    assert {row["left_id"] for row in rows} <= lefts
    f1 = float(done.stdout.split("F1 ")[1].split()[0])
    assert f1 >= 0.9, done.stdout


def test_train_writes_a_model_that_link_then_uses(files: dict[str, Path]) -> None:
    model = files["dir"] / "model.json"
    trained = _run("train", "--left", files["left"], "--right", files["right"], "--config", files["config"],
                   "--out", model, "--version", "test-1")
    assert trained.returncode == 0, trained.stderr
    assert '"version": "test-1"' in model.read_text()
    used = _run("link", "--left", files["left"], "--right", files["right"], "--config", files["config"],
                "--out", files["dir"] / "pairs2.csv", "--model", model)
    assert used.returncode == 0, used.stderr
    assert "model test-1" in used.stdout


@pytest.mark.parametrize(("spoil", "says"), [
    ("missing file", "no such file"),
    ("unknown role", "unknown role 'fist_name'"),
    ("bad yaml", "not valid YAML"),
    ("missing column", "no column 'Nope'"),
])
def test_a_mistake_is_one_line_and_a_non_zero_exit(files: dict[str, Path], tmp_path: Path, spoil: str, says: str) -> None:
    config = tmp_path / "fields.yaml"
    left = files["left"]
    if spoil == "missing file":
        config.write_text(FIELDS_YAML)
        left = tmp_path / "absent.csv"
    elif spoil == "unknown role":
        config.write_text("id: customer_id\nfist_name: first_name\n")
    elif spoil == "bad yaml":
        config.write_text("id: [customer_id\n")
    else:
        config.write_text(FIELDS_YAML.replace("first_name: FirstName", "first_name: Nope"))
    done = _run("link", "--left", left, "--right", files["right"], "--config", config, "--out", tmp_path / "p.csv")
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
