"""A release as CI deploys it (docs/deploy.md): deploy/k8s/render.sh with the digests of the
images CI pushed pins every image of the suite by digest, and refuses a digest set that leaves
one out. Rendered offline with kubectl's Kustomize, as `make k8s-check` does."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RENDER = ROOT / "deploy" / "k8s" / "render.sh"
KUBECTL = Path(sys.executable).parent / "kubectl"
REGISTRY = "ghcr.io/acme/ledgerline"
CI = ROOT / ".github" / "workflows" / "ci.yml"


def ci_images() -> list[str]:
    """The images CI builds and keeps the digests of: the image job's matrix."""
    matrix = yaml.safe_load(CI.read_text())["jobs"]["image"]["strategy"]["matrix"]
    return sorted({*matrix["service"], *(entry["service"] for entry in matrix.get("include", []))})


IMAGES = ci_images()


def digest_of(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def render(digests: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECTL": str(KUBECTL)}
    if digests is not None:
        env["LEDGERLINE_DIGESTS"] = str(digests)
    return subprocess.run(
        [str(RENDER), "dev", "abc1234", REGISTRY],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def images_of(manifests: str) -> set[str]:
    found = set()
    for document in yaml.safe_load_all(manifests):
        template = document.get("spec", {}).get("template", {})
        if document["kind"] == "Job":
            template = document["spec"]["template"]
        for container in template.get("spec", {}).get("containers", []):
            found.add(container["image"])
    return found


def test_every_image_of_the_suite_is_pinned_by_its_digest(tmp_path: Path) -> None:
    digests = tmp_path / "digests"
    digests.write_text("".join(f"{name} {digest_of(name)}\n" for name in IMAGES))

    result = render(digests)

    assert result.returncode == 0, result.stderr
    ours = {image for image in images_of(result.stdout) if image.startswith(REGISTRY)}
    assert ours == {f"{REGISTRY}/{name}@{digest_of(name)}" for name in IMAGES}


def test_without_digests_the_images_carry_the_tag() -> None:
    result = render(None)

    assert result.returncode == 0, result.stderr
    ours = {image for image in images_of(result.stdout) if image.startswith(REGISTRY)}
    assert ours == {f"{REGISTRY}/{name}:abc1234" for name in IMAGES}


@pytest.mark.parametrize("broken", ["missing", "not a digest"])
def test_a_release_is_never_half_pinned(tmp_path: Path, broken: str) -> None:
    lines = [f"{name} {digest_of(name)}" for name in IMAGES if name != "sync"]
    if broken == "not a digest":
        lines.append("sync latest")
    digests = tmp_path / "digests"
    digests.write_text("\n".join(lines) + "\n")

    result = render(digests)

    assert result.returncode == 2
    assert "no digest for image sync" in result.stderr
    assert result.stdout == ""


def test_ci_builds_every_image_the_manifests_run() -> None:
    """deploy-staging pins the images by the digests of the image job's builds: an image the
    manifests name but CI does not build would stop every deployment."""
    result = render(None)

    assert result.returncode == 0, result.stderr
    named = {
        image.removeprefix(f"{REGISTRY}/").split(":")[0]
        for image in images_of(result.stdout)
        if image.startswith(REGISTRY)
    }
    assert named == set(IMAGES)


def test_deploy_staging_follows_the_image_pushes_in_the_staging_environment() -> None:
    job = yaml.safe_load(CI.read_text())["jobs"]["deploy-staging"]
    assert job["needs"] == "image"
    assert job["environment"]["name"] == "staging"
    assert job["env"]["KUBE_CONFIG"] == "${{ secrets.KUBE_CONFIG }}"
    steps = " ".join(str(step.get("run", "")) for step in job["steps"])
    assert "deploy/k8s/deploy.sh" in steps
    assert "LEDGERLINE_DIGESTS" in steps
    assert "scripts/smoke.py" in steps
