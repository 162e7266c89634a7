"""The Kubernetes manifests (deploy/k8s/) run every service the way the code expects.

`make deploy-check` validates the rendered manifests against Kubernetes' schemas and checkov's
rules; this checks what only the repository knows: every service and every topic of the events
catalogue is there, probes and ports are the ones the services serve, and every configured name
is a setting the service reads (a misspelt one would be ignored without a word), secrets kept
out of the ConfigMaps. No cluster is needed: the overlays are rendered with kubectl's
Kustomize.
"""

import importlib
import importlib.util
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, SecretStr

from common.config import BaseServiceSettings
from common.health import router as health_router

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
SERVICES = sorted(
    folder.name for folder in (ROOT / "services").iterdir() if (folder / "pyproject.toml").is_file()
)
KUBECTL = Path(sys.executable).parent / "kubectl"
API_PORT = 8000


@cache
def rendered(overlay: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The overlay's resources by (kind, name); ConfigMaps without their hash suffix."""
    output = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    for document in yaml.safe_load_all(output):
        name = document["metadata"]["name"]
        if document["kind"] == "ConfigMap":
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        resources[(document["kind"], name)] = document
    return resources


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def config_map(overlay: str, name: str) -> dict[str, str]:
    data: dict[str, str] = rendered(overlay)[("ConfigMap", name)].get("data", {})
    return data


def module_name(service: str) -> str:
    """The service's Python module: its folder's name unless its pyproject names another."""
    pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    backend = pyproject.get("tool", {}).get("uv", {}).get("build-backend", {})
    return str(backend.get("module-name", service))


def settings_class(service: str) -> type[BaseServiceSettings]:
    module = importlib.import_module(f"{module_name(service)}.config")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseServiceSettings)
        and value is not BaseServiceSettings
    ]
    assert len(found) == 1, f"{service}.config should define one settings class"
    return found[0]


def shared_names() -> set[str]:
    """The variables read without a prefix (common.config's `shared(...)` aliases)."""
    names: set[str] = set()
    for field in BaseServiceSettings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices)
    return names


def prefixed_names(service: str) -> dict[str, str]:
    """Environment variable -> field name, for the service's own (prefixed) settings."""
    settings = settings_class(service)
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {
        f"{prefix}{name}".upper(): name
        for name, field in settings.model_fields.items()
        if field.validation_alias is None
    }


def holds_secrets(service: str, field_name: str) -> bool:
    """SecretStr settings, and the OIDC providers, whose entries carry client secrets."""
    annotation = settings_class(service).model_fields[field_name].annotation
    return annotation is SecretStr or field_name == "oidc_providers"


def catalogue_topics() -> set[str]:
    """Every topic docs/events.md names: producers' topics, consumed ones, dead-letter ones."""
    topics: set[str] = set()
    section = ""
    for line in (ROOT / "docs" / "events.md").read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if section == "Topics":
            wanted = [cells[0]]
        elif section == "Consumer groups":
            wanted = [cells[2], cells[4]]
        else:
            continue
        for cell in wanted:
            topics.update(re.findall(r"`([^`]+)`", cell))
    return topics


def topics_file() -> dict[str, tuple[int, int]]:
    entries: dict[str, tuple[int, int]] = {}
    for line in (K8S / "kafka-topics" / "topics.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        topic, partitions, retention_ms = line.split()
        entries[topic] = (int(partitions), int(retention_ms))
    return entries


def test_there_are_overlays() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_overlay_runs_the_service(overlay: str, service: str) -> None:
    resources = rendered(overlay)
    wanted = [
        ("Deployment", f"{service}-api"),
        ("Deployment", f"{service}-worker"),
        ("Service", f"{service}-api"),
        ("HorizontalPodAutoscaler", f"{service}-api"),
        ("PodDisruptionBudget", f"{service}-api"),
        ("PodDisruptionBudget", f"{service}-worker"),
        ("Job", f"{service}-migrate"),
        ("ConfigMap", f"{service}-config"),
    ]
    missing = [f"{kind} {name}" for kind, name in wanted if (kind, name) not in resources]
    assert not missing, (
        f"overlay {overlay} lacks {', '.join(missing)}: add deploy/k8s/services/{service}/ and "
        "list it in deploy/k8s/base/kustomization.yaml (deploy/k8s/README.md, Adding a service)"
    )
    for kind, name in wanted[:2] + wanted[-2:-1]:
        containers = pod_spec(resources[(kind, name)])["containers"]
        assert containers[0]["image"] == f"ledgerline/{service}", f"{name} runs another image"
        secrets = {
            source["secretRef"]["name"]
            for source in containers[0]["envFrom"]
            if "secretRef" in source
        }
        assert secrets == {f"{service}-secrets", "ledgerline-shared-secrets"}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_probes_and_ports_are_the_ones_the_service_serves(overlay: str, service: str) -> None:
    served = {getattr(route, "path", None) for route in health_router.routes}
    api = pod_spec(rendered(overlay)[("Deployment", f"{service}-api")])["containers"][0]
    assert api["ports"] == [{"name": "http", "containerPort": API_PORT}]
    # The image's command serves on this port (Dockerfile).
    assert f"--port {API_PORT}" in (ROOT / "Dockerfile").read_text()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[probe]["httpGet"]["path"] in served, f"{service}-api's {probe}"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    service_port = rendered(overlay)[("Service", f"{service}-api")]["spec"]["ports"][0]
    assert service_port["port"] == API_PORT


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_worker_and_migrations_run_the_image_entry_points(overlay: str, service: str) -> None:
    resources = rendered(overlay)
    worker = pod_spec(resources[("Deployment", f"{service}-worker")])["containers"][0]
    migrate = pod_spec(resources[("Job", f"{service}-migrate")])["containers"][0]
    # LEDGERLINE_SERVICE is the service's folder, set in the image (Dockerfile); a package
    # named otherwise is named by LEDGERLINE_MODULE in the service's own config.
    assert "LEDGERLINE_SERVICE=${SERVICE}" in (ROOT / "Dockerfile").read_text()
    assert worker["command"][-1] == (
        'exec python -m "${LEDGERLINE_MODULE:-$LEDGERLINE_SERVICE}.worker"'
    )
    module = config_map(overlay, f"{service}-config").get("LEDGERLINE_MODULE", service)
    assert module == module_name(service)
    assert migrate["command"][-1] == (
        'exec alembic -c "/app/services/${LEDGERLINE_SERVICE}/alembic.ini" upgrade head'
    )
    assert (ROOT / "services" / service / "alembic.ini").is_file()
    assert importlib.util.find_spec(f"{module_name(service)}.worker") is not None


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_configured_name_is_a_setting_and_no_secret(overlay: str, service: str) -> None:
    own = prefixed_names(service)
    data = config_map(overlay, f"{service}-config")
    unknown = sorted(set(data) - set(own) - {"LEDGERLINE_MODULE"})
    assert not unknown, f"{service}-config sets {unknown}, which {service} does not read"
    secret = sorted(name for name in data if name in own and holds_secrets(service, own[name]))
    assert not secret, f"{secret} hold secrets: they belong in the Secret {service}-secrets"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shared_settings_are_shared_settings_and_no_secret(overlay: str) -> None:
    data = config_map(overlay, "ledgerline-shared")
    assert not sorted(set(data) - shared_names())
    assert "IDEMPOTENCY_SECRET" not in data
    assert data["AUTH_JWKS_URL"] == f"http://user-api:{API_PORT}/.well-known/jwks.json"
    assert data["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_rendered(overlay: str) -> None:
    assert not [name for kind, name in rendered(overlay) if kind == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_reaches_every_service(overlay: str) -> None:
    template = (ROOT / "deploy" / "gateway" / "ledgerline.conf.template").read_text()
    gateway = config_map(overlay, "gateway-config")
    for service in SERVICES:
        assert gateway.get(f"{service.upper()}_UPSTREAM") == f"{service}-api:{API_PORT}", (
            f"add {service.upper()}_UPSTREAM={service}-api:{API_PORT} to "
            "deploy/k8s/gateway/config.env"
        )
    # Set in the gateway's image (deploy/gateway/Dockerfile) rather than the ConfigMap.
    image_env = set(
        re.findall(r"\b(GATEWAY_[A-Z_]+)=", (K8S.parent / "gateway" / "Dockerfile").read_text())
    )
    placeholders = set(re.findall(r"\$\{([A-Z0-9_]+)\}", template))
    assert placeholders - set(gateway) - image_env == set()
    container = pod_spec(rendered(overlay)[("Deployment", "gateway")])["containers"][0]
    assert container["ports"][0]["containerPort"] == 8080
    assert "GATEWAY_LISTEN=8080" in (K8S.parent / "gateway" / "Dockerfile").read_text()
    assert "location = /gateway/health" in template
    assert container["readinessProbe"]["httpGet"]["path"] == "/gateway/health"


def test_every_topic_of_the_catalogue_is_created() -> None:
    catalogue = catalogue_topics()
    assert {"user.events", "invoice.events", "payment.events"} <= catalogue
    missing = sorted(catalogue - set(topics_file()))
    assert not missing, f"add {missing} to deploy/k8s/kafka-topics/topics.txt"
    for topic, (partitions, retention_ms) in topics_file().items():
        assert partitions >= 1, topic
        # At least a day: a consumer down over a night must still find its events.
        assert retention_ms >= 86_400_000, topic


def test_manifests_name_only_services() -> None:
    """A folder or upstream left after its service went away (or misspelt) is caught here."""
    folders = {path.name for path in (K8S / "services").iterdir() if path.is_dir()}
    assert folders - set(SERVICES) == set(), "deploy/k8s/services/ has folders of no service"
    upstreams = {
        name.removesuffix("_UPSTREAM").lower()
        for name in config_map(OVERLAYS[0], "gateway-config")
        if name.endswith("_UPSTREAM")
    }
    assert upstreams - set(SERVICES) == set(), "deploy/k8s/gateway/config.env names no service"
