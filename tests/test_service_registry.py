"""Every service is registered wherever the suite is started, built or provisioned.

The rule: a service is a folder under services/ with a pyproject.toml. A folder with only a
README (services/email and services/sync for now) is a service still to come, not a service:
nothing names it yet. Each service <name> must appear in

- docker-compose.yml: `<name>-migrate`, `<name>-api` and `<name>-worker`, built from the one
  Dockerfile with `SERVICE: <name>`; its name in the mysql container's LEDGERLINE_SERVICES
  (read by deploy/mysql/init/01-services.sh) with `<NAME>_DB_PASSWORD` beside it;
- the gateway template: an `upstream ledgerline_<name>` whose server is `${<NAME>_UPSTREAM}`;
- deploy/local/Procfile: `<name>-api` and `<name>-worker`;
- .github/workflows/ci.yml: the image job's `service` matrix.

No server is started: these read the files.
"""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.testing.gateway import GatewayConfig

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / "services"
COMPOSE = ROOT / "docker-compose.yml"
TEMPLATE = ROOT / "deploy" / "gateway" / "ledgerline.conf.template"
PROCFILE = ROOT / "deploy" / "local" / "Procfile"
CI = ROOT / ".github" / "workflows" / "ci.yml"


def is_service(folder: Path) -> bool:
    return folder.is_dir() and (folder / "pyproject.toml").is_file()


SERVICES = sorted(folder.name for folder in SERVICES_DIR.iterdir() if is_service(folder))
PLACEHOLDERS = sorted(
    folder.name for folder in SERVICES_DIR.iterdir() if folder.is_dir() and not is_service(folder)
)


def module_of(service: str) -> str:
    """The service's Python package: its folder's name unless its pyproject names another
    (the email service's is `mailer`, as `email` is the standard library's)."""
    project = tomllib.loads((SERVICES_DIR / service / "pyproject.toml").read_text())
    backend = project.get("tool", {}).get("uv", {}).get("build-backend", {})
    return str(backend.get("module-name", service))


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    return services


def init_list() -> list[str]:
    """The services the mysql container's init script creates a schema for."""
    return str(compose_services()["mysql"]["environment"]["LEDGERLINE_SERVICES"]).split()


def gateway_upstreams() -> dict[str, str]:
    """Upstream name (ledgerline_<name>) -> the placeholder of its server."""
    found = re.findall(
        r"upstream\s+ledgerline_(\w+)\s*\{\s*server\s+\$\{(\w+)\};", TEMPLATE.read_text()
    )
    return dict(found)


def procfile_entries() -> list[str]:
    return [
        line.split(":", 1)[0].strip()
        for line in PROCFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def ci_matrix() -> list[str]:
    workflow = yaml.safe_load(CI.read_text())
    return [str(name) for name in workflow["jobs"]["image"]["strategy"]["matrix"]["service"]]


def test_there_are_services() -> None:
    assert {"invoice", "user"} <= set(SERVICES)


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_folder_without_pyproject_is_not_a_service_yet(placeholder: str) -> None:
    """services/email and services/sync hold only a README: no list may name them yet."""
    named_in = {
        "docker-compose.yml": any(
            name.startswith(f"{placeholder}-") for name in compose_services()
        ),
        "LEDGERLINE_SERVICES": placeholder in init_list(),
        "the gateway template": placeholder in gateway_upstreams(),
        "deploy/local/Procfile": any(
            entry.startswith(f"{placeholder}-") for entry in procfile_entries()
        ),
        "the CI image matrix": placeholder in ci_matrix(),
    }
    assert not any(named_in.values()), (
        f"services/{placeholder} has no pyproject.toml, so it is not a service yet, but "
        f"{', '.join(place for place, named in named_in.items() if named)} name it: "
        "add its pyproject.toml or take it out of those lists"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_service_name_fits_every_place_it_is_used(service: str) -> None:
    # It is the Python module (unless its pyproject names another), the env prefix, the schema
    # <name>_svc (its "_" is escaped in the init script's GRANT), and part of container and
    # nginx upstream names.
    assert re.fullmatch(r"[a-z][a-z0-9]*", service), (
        f"services/{service}: a service's folder name is lower-case letters and digits"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_the_service(service: str) -> None:
    services = compose_services()
    missing = [
        f"{service}-{role}"
        for role in ("migrate", "api", "worker")
        if f"{service}-{role}" not in services
    ]
    assert not missing, f"docker-compose.yml has no {', '.join(missing)} for services/{service}"
    prefix = service.upper()
    for role in ("migrate", "api", "worker"):
        container = services[f"{service}-{role}"]
        build = container.get("build", {})
        assert build.get("dockerfile") == "Dockerfile", f"{service}-{role}: build the Dockerfile"
        assert build.get("args", {}).get("SERVICE") == service, (
            f"{service}-{role} is built with SERVICE={build.get('args', {}).get('SERVICE')!r}"
        )
        database_url = str(container.get("environment", {}).get(f"{prefix}_DATABASE_URL", ""))
        assert f"{service}_svc" in database_url, (
            f"{service}-{role} needs {prefix}_DATABASE_URL on the {service}_svc schema"
        )
    assert f"services/{service}/alembic.ini" in " ".join(services[f"{service}-migrate"]["command"])
    module = module_of(service)
    assert services[f"{service}-worker"]["command"] == ["python", "-m", f"{module}.worker"]
    if module != service:
        # The image's default command serves <LEDGERLINE_MODULE or SERVICE>.main.
        api_environment = services[f"{service}-api"].get("environment", {})
        assert api_environment.get("LEDGERLINE_MODULE") == module, (
            f"{service}-api needs LEDGERLINE_MODULE={module} to serve {module}.main"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_mysql_init_creates_the_schema(service: str) -> None:
    environment = compose_services()["mysql"]["environment"]
    assert service in init_list(), (
        f"add {service} to LEDGERLINE_SERVICES of the mysql service in docker-compose.yml"
    )
    assert f"{service.upper()}_DB_PASSWORD" in environment, (
        f"the mysql service in docker-compose.yml needs {service.upper()}_DB_PASSWORD"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_gateway_has_an_upstream(service: str) -> None:
    upstreams = gateway_upstreams()
    assert upstreams.get(service) == f"{service.upper()}_UPSTREAM", (
        f"the gateway template needs `upstream ledgerline_{service} "
        f"{{ server ${{{service.upper()}_UPSTREAM}}; }}` and routes to it"
    )
    assert f"proxy_pass http://ledgerline_{service};" in TEMPLATE.read_text(), (
        f"the gateway template routes nothing to ledgerline_{service}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_procfile_runs_the_service(service: str) -> None:
    entries = procfile_entries()
    missing = [
        f"{service}-{role}" for role in ("api", "worker") if f"{service}-{role}" not in entries
    ]
    assert not missing, f"deploy/local/Procfile has no {', '.join(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_ci_builds_the_image(service: str) -> None:
    assert service in ci_matrix(), f"add {service} to the image job's matrix in {CI.name}"


def test_lists_name_only_services() -> None:
    """A name left in a list after its folder went away (or was misspelt) is caught here."""
    names = set(SERVICES)
    stray = {
        "LEDGERLINE_SERVICES": set(init_list()) - names,
        "the gateway template": set(gateway_upstreams()) - names,
        "the CI image matrix": set(ci_matrix()) - names,
    }
    assert not any(stray.values()), {place: sorted(n) for place, n in stray.items() if n}


def test_every_gateway_placeholder_is_filled_locally_and_in_compose() -> None:
    """The template's placeholders: each one a GatewayConfig field and a compose variable."""
    placeholders = set(re.findall(r"\$\{([A-Z0-9_]+)\}", TEMPLATE.read_text()))
    local = set(GatewayConfig(port=1, user_upstream="x", invoice_upstream="x").variables(ROOT))
    assert placeholders - local == set(), "add these to GatewayConfig.variables()"
    gateway = compose_services()["gateway"]["environment"]
    assert placeholders - set(gateway) == set(), "add these to the gateway's environment"
    # Compose turns $$ into $; the nginx image substitutes only the names this matches.
    name_filter = re.compile(str(gateway["NGINX_ENVSUBST_FILTER"]).replace("$$", "$"))
    assert {name for name in placeholders if not name_filter.search(name)} == set()
