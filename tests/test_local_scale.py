"""`make run SCALE=N`: the process list scripts/devstack.py writes from deploy/local/Procfile.
No process is started: this reads the list it makes."""

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def devstack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("devstack", ROOT / "scripts" / "devstack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("devstack", module)
    spec.loader.exec_module(module)
    return module


def entries(procfile: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in procfile.splitlines())


def api_port(command: str) -> int:
    found = re.search(r"--port (\d+)", command)
    assert found is not None, command
    return int(found.group(1))


def test_scale_one_is_the_procfile_as_written() -> None:
    written = entries(
        "\n".join(
            line
            for line in (ROOT / "deploy" / "local" / "Procfile").read_text().splitlines()
            if line.strip()
        )
    )
    scaled = entries(devstack().procfile(1))
    assert scaled.keys() == written.keys()
    assert {name: command for name, command in scaled.items() if name != "gateway"} == {
        name: command for name, command in written.items() if name != "gateway"
    }
    assert scaled["gateway"].endswith(written["gateway"])


def test_scale_two_runs_every_api_and_worker_twice_behind_one_gateway() -> None:
    scaled = entries(devstack().procfile(2))
    apis = sorted(name for name in scaled if name.endswith("-api"))
    workers = sorted(name for name in scaled if name.endswith("-worker"))
    assert apis
    assert workers
    for name in apis:
        first, second = scaled[name], scaled[f"{name}-2"]
        assert api_port(second) == api_port(first) + 10
        assert re.sub(r"--port \d+", "", first) == re.sub(r"--port \d+", "", second)
        upstream = name.removesuffix("-api").upper() + "_UPSTREAM"
        assert (
            f"{upstream}=127.0.0.1:{api_port(first)},127.0.0.1:{api_port(second)}"
            in scaled["gateway"]
        )
    for name in workers:
        assert scaled[f"{name}-2"] == scaled[name]
    ports = [api_port(command) for name, command in scaled.items() if "-api" in name]
    assert len(ports) == len(set(ports)) == 2 * len(apis)
    # Everything else once: the broker, the simulators, S3, the gateway.
    others = [name for name in scaled if "-api" not in name and "-worker" not in name]
    assert sorted(others) == sorted(set(others))
    assert not any(name.endswith("-2") for name in others)


@pytest.mark.parametrize("scale", [0, 10])
def test_scale_out_of_range_is_refused(scale: int) -> None:
    with pytest.raises(SystemExit, match="SCALE must be 1 to 9"):
        devstack().procfile(scale)
