"""docker-compose.yml cannot run here (no engine), so check what can go wrong without one."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream_app.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_mounted_file_exists_in_the_repo() -> None:
    mounts = [
        volume.split(":")[0]
        for service in COMPOSE["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    assert mounts, "expected bind mounts of repo files"
    missing = [m for m in mounts if not (ROOT / m).exists()]
    assert missing == []


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in COMPOSE["services"].items():
        if "image" in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"
        else:
            assert (ROOT / service["build"] / "Dockerfile").exists(), f"{name} builds from a missing Dockerfile"


def test_worker_settings_are_the_apps_settings() -> None:
    known = {env_name(field) for field in Settings.model_fields}
    given = set(COMPOSE["services"]["worker"]["environment"])
    assert given - known == set(), f"unknown settings in docker-compose.yml: {sorted(given - known)}"
    Settings(**{field: COMPOSE["services"]["worker"]["environment"][env_name(field)]
                for field in Settings.model_fields if env_name(field) in given})


def test_kafka_image_matches_the_pinned_local_broker() -> None:
    from stream_app.kafka_local import KAFKA_VERSION

    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_prometheus_scrapes_the_worker_web_port() -> None:
    config = yaml.safe_load((ROOT / "grafana/prometheus.yml").read_text())
    port = COMPOSE["services"]["worker"]["environment"]["CONNECT_WEB_PORT"]
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"worker:{port}" in targets


def test_docker_waits_for_the_workers_own_shutdown_deadline() -> None:
    worker = COMPOSE["services"]["worker"]
    grace = float(worker["environment"].get("CONNECT_SHUTDOWN_GRACE", Settings.model_fields["shutdown_grace"].default))
    assert float(worker["stop_grace_period"].removesuffix("s")) > grace
