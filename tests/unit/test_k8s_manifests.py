"""deploy/k8s cannot be applied here (no cluster), so check what can go wrong without one: the
probes ask the paths and ports the code serves, every variable set is a setting, the secret file
holds settings, the worker's state is on its volume, every source has its Deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from connectors import registry
from stream_app.health import HEALTHZ, READYZ
from stream_app.settings import OTHER_VARIABLES, Settings, env_name
from stream_app.sinks.registry import enabled_sinks

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def applied() -> list[dict[str, Any]]:
    kustomization = documents("kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in documents(name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in applied() if doc["kind"] == kind]


CONFIG = of_kind("ConfigMap")[0]["data"]


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in of_kind("StatefulSet") + of_kind("Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield workload, container


def test_every_file_parses_and_the_kustomization_lists_every_manifest_but_the_example() -> None:
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(documents("kustomization.yaml")[0]["resources"]) == files
    for doc in applied() + documents("secret.example.yaml"):
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc


def test_every_variable_set_is_a_setting_and_the_config_validates() -> None:
    known = {env_name(field) for field in Settings.model_fields} | set(OTHER_VARIABLES)
    given = set(CONFIG)
    for _, container in containers():
        given |= {item["name"] for item in container.get("env", [])}
    assert given - known == set(), f"not settings: {sorted(given - known)}"
    settings = Settings(**{field: CONFIG[env_name(field)] for field in Settings.model_fields
                           if env_name(field) in CONFIG})
    assert enabled_sinks(settings)


def test_the_secret_file_holds_settings_in_lower_case() -> None:
    [secret] = documents("secret.example.yaml")
    mount = {Path(CONFIG["CONNECT_CONFIG_FILE"]).name, Path(CONFIG["CONNECT_SALESFORCE_PRIVATE_KEY_FILE"]).name}
    assert mount <= set(secret["stringData"])
    assert set(yaml.safe_load(secret["stringData"]["secrets.yaml"])) <= set(Settings.model_fields)
    for workload, container in containers():
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        [secrets] = [m for m in container["volumeMounts"] if volumes.get(m["name"], {}).get("secret")]
        assert secrets["mountPath"] == str(Path(CONFIG["CONNECT_CONFIG_FILE"]).parent) and secrets["readOnly"]
        assert volumes[secrets["name"]]["secret"]["secretName"] == secret["metadata"]["name"]


def port_number(container: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


@pytest.mark.parametrize("probe, path", [("livenessProbe", HEALTHZ), ("readinessProbe", READYZ)])
def test_probes_ask_the_paths_and_ports_the_code_serves(probe: str, path: str) -> None:
    for workload, container in containers():
        worker = workload["kind"] == "StatefulSet"
        served = int(CONFIG["CONNECT_WEB_PORT"] if worker else CONFIG["CONNECT_METRICS_PORT"])
        check = container[probe]["httpGet"]
        assert check["path"] == path, workload["metadata"]["name"]
        assert port_number(container, check["port"]) == served, workload["metadata"]["name"]
        startup = container.get("startupProbe")
        if startup is not None:
            assert startup["httpGet"]["path"] == HEALTHZ
    assert CONFIG["CONNECT_WEB_HOST"] == CONFIG["CONNECT_METRICS_HOST"] == "0.0.0.0"  # reachable by the kubelet


def test_every_container_requests_resources() -> None:
    for workload, container in containers():
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), workload["metadata"]["name"]
        assert "memory" in container["resources"]["limits"]


def test_the_worker_keeps_its_state_on_its_own_volume_and_is_disrupted_one_at_a_time() -> None:
    [worker] = of_kind("StatefulSet")
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["stream-app", "worker"]
    [claim] = worker["spec"]["volumeClaimTemplates"]
    [data] = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert data["mountPath"] == CONFIG["CONNECT_DATA_DIR"]
    assert worker["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    assert services[worker["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    [budget] = of_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["maxUnavailable"] == 1


def test_kubernetes_waits_for_the_workers_own_shutdown_deadline() -> None:
    [worker] = of_kind("StatefulSet")
    grace = float(CONFIG.get("CONNECT_SHUTDOWN_GRACE", Settings.model_fields["shutdown_grace"].default))
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_every_source_runs_alone_in_its_deployment_with_a_service() -> None:
    systems = {}
    services = of_kind("Service")
    for deployment in of_kind("Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"][:2] == ["stream-app", "source"]
        systems[container["command"][2]] = deployment
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(s["spec"]["selector"] == labels for s in services), deployment["metadata"]["name"]
    assert set(systems) == set(registry.names())
