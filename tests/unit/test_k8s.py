"""The Kubernetes manifests (deploy/k8s) against the Kubernetes API schemas and the code they run.

No cluster and no kustomize binary: a small loader below renders the kustomizations (it knows exactly the
fields they use and refuses any other, so it cannot silently skip a patch), every core object is checked
against the official Kubernetes OpenAPI schemas that the package kubernetes-validate ships offline, KEDA's
objects (custom resources, not in those schemas) against a small schema of the fields used here, and the
manifests against the code: commands, probes, variables, queue names, ports and selectors. When kubectl
or kustomize is on PATH, the loader's output is also compared with the real kustomize's.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from packaging.version import Version

from services import bus, store
from services.config import VARIABLES, Settings
from twincity import cli
from twincity.cli import main

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
SECRET_TEMPLATE = BASE / "secret.example.yaml"

CONFIG_MAP = "twincity-config"
SECRET = "twincity-secrets"
QUEUE_SERVICES = [name for name in cli.SERVICES if name != "gateway"]  # ideas, matching, notify
READ = {var.name for var in VARIABLES}

# The oldest Kubernetes the manifests claim to support (README.md); checked with the newest too.
MIN_KUBERNETES = "1.29"


# --- a small kustomize ------------------------------------------------------------------------------

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas"}
SCALABLE_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
WORKLOAD_KINDS = SCALABLE_KINDS | {"DaemonSet", "Job"}


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a port in the registry host is not a tag."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest or None
    return name, None, digest or None


def pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if obj["kind"] in WORKLOAD_KINDS:
        yield obj["spec"]["template"]["spec"]


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for spec in pod_specs(obj):
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def render(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build directory` gives, for the fields in SUPPORTED_FIELDS."""
    path = directory / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    unknown = set(kustomization) - SUPPORTED_FIELDS
    assert not unknown, (
        f"{path}: this test's loader does not implement {sorted(unknown)}; implement it in render() "
        "(honestly) or keep the kustomization to " + ", ".join(sorted(SUPPORTED_FIELDS))
    )
    assert kustomization.get("kind") == "Kustomization", f"{path}: kind must be Kustomization"

    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        resource = (directory / entry).resolve()
        if resource.is_dir():
            objects += render(resource)
        else:
            assert resource.is_file(), f"{path}: resource {entry} does not exist"
            objects += [doc for doc in yaml.safe_load_all(resource.read_text()) if doc is not None]

    if "namespace" in kustomization:
        for obj in objects:
            obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]

    for rule in kustomization.get("images", []):
        matched = False
        for obj in objects:
            for container in containers(obj):
                name, tag, digest = split_image(container["image"])
                if name != rule["name"]:
                    continue
                matched = True
                name = rule.get("newName", name)
                tag = rule.get("newTag", tag)
                digest = rule.get("digest", digest)
                container["image"] = name + (f":{tag}" if tag and not digest else "") + (f"@{digest}" if digest else "")
        assert matched, f"{path}: images entry {rule['name']!r} matches no container image"

    for rule in kustomization.get("replicas", []):
        targets = [o for o in objects if o["kind"] in SCALABLE_KINDS and o["metadata"]["name"] == rule["name"]]
        assert len(targets) == 1, f"{path}: replicas entry {rule['name']!r} matches {len(targets)} workloads"
        targets[0]["spec"]["replicas"] = int(rule["count"])

    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        assert key not in seen, f"{path}: {key} is defined twice (kustomize refuses that)"
        seen.add(key)
    return objects


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(PRODUCTION)


@pytest.fixture(scope="module", params=["base", "production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return copy.deepcopy(request.getfixturevalue(request.param))


@pytest.fixture(scope="module")
def secret_template() -> dict[str, Any]:
    return yaml.safe_load(SECRET_TEMPLATE.read_text())


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def component(deployment: dict[str, Any]) -> str:
    return deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    found = deployment["spec"]["template"]["spec"]["containers"]
    assert len(found) == 1, f"{deployment['metadata']['name']}: one container a pod"
    return found[0]


# --- the loader itself ------------------------------------------------------------------------------


def test_the_loader_refuses_fields_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(BASE)], "patches": [{"path": "p.yaml"}]}))
    with pytest.raises(AssertionError, match="patches"):
        render(tmp_path)


def test_the_loader_applies_images_and_replicas(production: list[dict[str, Any]]) -> None:
    assert split_image("registry:5000/a/b:1.2@sha256:00") == ("registry:5000/a/b", "1.2", "sha256:00")
    assert split_image("registry:5000/a/b") == ("registry:5000/a/b", None, None)
    deployments = of_kind(production, "Deployment")
    assert deployments["matching-worker"]["spec"]["replicas"] == 2
    assert only_container(deployments["ideas-web"])["image"] == "registry.example.org/twincity/ideas:0.1.0"
    assert {o["metadata"]["namespace"] for o in production} == {"twincity"}


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(kustomize_command() is None, reason="neither kustomize nor kubectl is installed")
@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_the_loader_agrees_with_kustomize(directory: Path) -> None:
    command = kustomize_command()
    assert command is not None
    try:
        done = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{' '.join(command)} did not answer within 60 s")
    assert done.returncode == 0, done.stderr

    def canonical(objects: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True) for o in objects)

    theirs = [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
    assert canonical(render(directory)) == canonical(theirs)


# --- what is rendered -------------------------------------------------------------------------------


def expected_objects() -> set[tuple[str, str]]:
    wanted = {("ConfigMap", CONFIG_MAP), ("TriggerAuthentication", "twincity-rabbitmq"),
              ("Deployment", "gateway"), ("Service", "gateway"), ("HorizontalPodAutoscaler", "gateway"),
              ("PodDisruptionBudget", "gateway"), ("Ingress", "gateway")}
    for service in QUEUE_SERVICES:
        web, worker = f"{service}-web", f"{service}-worker"
        wanted |= {("Deployment", web), ("Service", web), ("HorizontalPodAutoscaler", web),
                   ("PodDisruptionBudget", web), ("NetworkPolicy", web),
                   ("Deployment", worker), ("ScaledObject", worker)}
    return wanted


def test_the_kustomizations_render_the_expected_objects(rendered: list[dict[str, Any]]) -> None:
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered} == expected_objects()


def test_the_secret_is_a_template_outside_the_kustomization(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    # Applied with the rest, placeholders would overwrite the real Secret on every `kubectl apply -k`.
    assert not of_kind(rendered, "Secret"), "the Secret must come from a secret store, not from kustomize"
    assert secret_template["kind"] == "Secret" and secret_template["metadata"]["name"] == SECRET
    assert set(secret_template["stringData"]) == {
        "AMQP_URL", "MONGO_URL", "TWINCITY_ADMIN_KEY", "NOTIFY_SECRET", "SMTP_URL"}
    for key, value in secret_template["stringData"].items():
        assert "CHANGE-ME" in value, f"{key}: the template shows placeholders, never a usable secret"


def test_nothing_names_a_pod_or_a_namespace_itself(base: list[dict[str, Any]]) -> None:
    assert not of_kind(base, "Pod"), "pods come from Deployments (no fixed pod names)"
    for obj in base:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert "namespace" not in obj["metadata"], f"{name}: the base is namespace-agnostic"


# --- schemas ----------------------------------------------------------------------------------------


def kubernetes_versions() -> list[str]:
    bundled = sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()}, key=Version)
    supported = [v for v in bundled if Version(v) >= Version(MIN_KUBERNETES)] or bundled[-1:]
    return sorted({supported[0], supported[-1]}, key=Version)


@pytest.mark.parametrize("version", kubernetes_versions())
def test_core_objects_match_the_kubernetes_schemas(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any], version: str
) -> None:
    core = [o for o in rendered if not o["apiVersion"].startswith("keda.sh/")]
    assert core
    problems = []
    for obj in [*core, secret_template]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path) or "top level"
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {where}")
    assert not problems, f"not valid Kubernetes {version}:\n" + "\n".join(problems)


# The OpenAPI schemas take any string for a quantity; the API server does not.
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[mkMGTPE]?)$")
_FACTOR = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           **{f"{p}i": 1024.0 ** (i + 1) for i, p in enumerate("KMGTPE")}}


def quantity(value: str | int) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"{value!r} is not a Kubernetes quantity (like 250m, 1, 512Mi)"
    return float(match["number"]) * _FACTOR[match["suffix"]]


def test_resource_quantities_are_valid_and_requests_fit_the_limits(rendered: list[dict[str, Any]]) -> None:
    assert quantity("250m") == 0.25 and quantity("512Mi") == 512 * 2**20
    for obj in rendered:
        for spec in pod_specs(obj):
            for volume in spec.get("volumes", []):
                if "sizeLimit" in volume.get("emptyDir", {}):
                    quantity(volume["emptyDir"]["sizeLimit"])
        for container in containers(obj):
            resources = container.get("resources", {})
            for resource, limit in resources.get("limits", {}).items():
                request = resources.get("requests", {}).get(resource, limit)
                assert quantity(request) <= quantity(limit), f"{obj['metadata']['name']}: {resource} request > limit"


_DNS_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
             "maxLength": 253}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {"type": "object", "additionalProperties": False, "required": ["name"],
             "properties": {"name": _DNS_NAME, "namespace": _DNS_NAME, "labels": _STRING_MAP,
                            "annotations": _STRING_MAP}}
_NUMBER = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}

# The fields of keda.sh/v1alpha1 these manifests use (names as in KEDA's CRDs); an unknown or misspelt
# field fails, and so do credentials written into the trigger (a `host` with a password in it).
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object", "additionalProperties": False, "required": ["name"],
                    "properties": {"name": _DNS_NAME, "kind": {"const": "Deployment"},
                                   "apiVersion": {"const": "apps/v1"}}},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "additionalProperties": False, "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "rabbitmq"},
                            "name": {"type": "string"},
                            "authenticationRef": {
                                "type": "object", "additionalProperties": False, "required": ["name"],
                                "properties": {"name": _DNS_NAME, "kind": {"const": "TriggerAuthentication"}}},
                            "metadata": {
                                "type": "object", "additionalProperties": False,
                                "required": ["mode", "value", "queueName"],
                                "properties": {
                                    "protocol": {"enum": ["auto", "amqp", "http"]},
                                    "mode": {"const": "QueueLength"},
                                    "value": _NUMBER,
                                    "activationValue": _NUMBER,
                                    "queueName": {"type": "string", "minLength": 1},
                                    "vhostName": {"type": "string"},
                                    "hostFromEnv": {"type": "string"},
                                }},
                        },
                        "anyOf": [{"required": ["authenticationRef"]},
                                  {"properties": {"metadata": {"required": ["hostFromEnv"]}}}],
                    }},
            }},
    },
}

TRIGGER_AUTHENTICATION_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["secretTargetRef"],
            "properties": {
                "secretTargetRef": {
                    "type": "array", "minItems": 1,
                    "items": {"type": "object", "additionalProperties": False,
                              "required": ["parameter", "name", "key"],
                              "properties": {"parameter": {"enum": ["host", "username", "password"]},
                                             "name": _DNS_NAME, "key": {"type": "string", "minLength": 1}}}},
            }},
    },
}

KEDA_SCHEMAS = {"ScaledObject": SCALED_OBJECT_SCHEMA, "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA}


def test_keda_objects_match_their_schema(rendered: list[dict[str, Any]]) -> None:
    keda = [o for o in rendered if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == set(KEDA_SCHEMAS)
    for obj in keda:
        jsonschema.Draft202012Validator.check_schema(KEDA_SCHEMAS[obj["kind"]])
        errors = sorted(jsonschema.Draft202012Validator(KEDA_SCHEMAS[obj["kind"]]).iter_errors(obj), key=str)
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{e.message} at {'/'.join(map(str, e.path))}" for e in errors)


def test_the_keda_schema_catches_mistakes(rendered: list[dict[str, Any]]) -> None:
    scaled = copy.deepcopy(of_kind(rendered, "ScaledObject")["ideas-worker"])
    validator = jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA)
    assert validator.is_valid(scaled)
    for broken in (
        lambda s: s["spec"].update(minReplicas=1),                                   # HPA's word, not KEDA's
        lambda s: s["spec"]["triggers"][0]["metadata"].update(value=100),            # must be a string
        lambda s: s["spec"]["triggers"][0]["metadata"].update(host="amqp://u:p@h"),  # password in plain text
        lambda s: s["spec"]["triggers"][0].update(type="rabbitMQ"),
    ):
        candidate = copy.deepcopy(scaled)
        broken(candidate)
        assert not validator.is_valid(candidate)


# --- the manifests against the code -----------------------------------------------------------------


def resolve(argv: list[str]) -> click.Command:
    """The click command that `twincity ...` runs; fails when there is none or its options are wrong."""
    shown = " ".join(argv)
    assert argv[:1] == ["twincity"], f"`{shown}` does not run twincity"
    command: click.Command = main
    args = argv[1:]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in command.commands, f"`{shown}`: no command {name!r}"
        command = command.commands[name]
    assert not isinstance(command, click.Group), f"`{shown}` names a group, not a command to run"
    command.make_context(shown, args)
    return command


def test_every_process_runs_in_a_deployment_of_its_own(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    wanted = {}
    for service in cli.SERVICES:
        for process in main.commands[service].commands:  # type: ignore[attr-defined]
            name = "gateway" if service == "gateway" else f"{service}-{process}"
            wanted[name] = ["twincity", service, process]
    assert set(deployments) == set(wanted)
    for name, deployment in deployments.items():
        container = only_container(deployment)
        assert container["command"] == wanted[name], f"{name}: runs {container['command']}"
        assert "args" not in container, f"{name}: options belong in the environment (VARIABLES)"
        resolve(container["command"])
        assert component(deployment) == wanted[name][-1]
        assert split_image(container["image"])[0].endswith(f"twincity/{wanted[name][1]}")


def container_env(container: dict[str, Any], config: dict[str, Any], secret: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet gives a container (envFrom first, then env), with the Secret's template values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] == CONFIG_MAP
            env.update(config["data"])
        else:
            assert source["secretRef"]["name"] == SECRET
            env.update(secret["stringData"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            assert ref["secretKeyRef"]["name"] == SECRET, f"{var['name']}: from an unknown Secret"
            assert ref["secretKeyRef"]["key"] in secret["stringData"], f"{var['name']}: the Secret has no such key"
            env[var["name"]] = secret["stringData"][ref["secretKeyRef"]["key"]]
        else:
            assert ref["configMapKeyRef"]["name"] == CONFIG_MAP, f"{var['name']}: from an unknown ConfigMap"
            env[var["name"]] = config["data"][ref["configMapKeyRef"]["key"]]
    return env


def environments(objects: list[dict[str, Any]], secret: dict[str, Any]) -> dict[str, dict[str, str]]:
    config = of_kind(objects, "ConfigMap")[CONFIG_MAP]
    deployments = of_kind(objects, "Deployment")
    return {name: container_env(only_container(d), config, secret) for name, d in deployments.items()}


def test_every_variable_is_one_the_platform_reads(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    config = of_kind(rendered, "ConfigMap")[CONFIG_MAP]
    for name in config["data"]:
        assert name in READ, f"ConfigMap {CONFIG_MAP} sets {name}, which the platform does not read"
    for name in secret_template["stringData"]:
        assert name in READ, f"Secret {SECRET} holds {name}, which the platform does not read"
    both = set(config["data"]) & set(secret_template["stringData"])
    assert not both, f"{sorted(both)} in both the ConfigMap and the Secret: which one wins is easy to misread"
    for deployment in of_kind(rendered, "Deployment").values():
        for var in only_container(deployment).get("env", []):
            assert var["name"] in READ, f"{deployment['metadata']['name']} sets {var['name']}, which nothing reads"


def test_every_process_gets_a_valid_production_configuration(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    for name, env in environments(rendered, secret_template).items():
        settings = Settings.from_env(env)  # raises ConfigError naming the variable
        assert not settings.embedded, f"{name}: AMQP_URL must point at the RabbitMQ cluster"
        assert settings.mongo_url.startswith("mongodb"), f"{name}: MONGO_URL must point at the replica set"
        assert "replicaSet=" in settings.mongo_url, f"{name}: name the replica set so the driver follows failovers"
        # KEDA's operator reads AMQP_URL from its own namespace: a short host name would not resolve there.
        assert "." in (urlsplit(settings.amqp_url).hostname or ""), f"{name}: AMQP_URL needs <svc>.<namespace>"


def test_secrets_go_only_where_they_are_needed(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    envs = environments(rendered, secret_template)
    assert {n for n, e in envs.items() if "TWINCITY_ADMIN_KEY" in e} == {"gateway"}
    notify = {n for n in envs if n.startswith("notify-")}
    assert {n for n, e in envs.items() if "NOTIFY_SECRET" in e} == notify
    assert len({envs[n]["NOTIFY_SECRET"] for n in notify}) == 1, "notify's web and worker must share NOTIFY_SECRET"
    assert {n for n, e in envs.items() if "SMTP_URL" in e} == notify


def test_the_gateway_calls_each_service_through_its_service(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    settings = Settings.from_env(environments(rendered, secret_template)["gateway"])
    services = of_kind(rendered, "Service")
    deployments = of_kind(rendered, "Deployment")
    for service in QUEUE_SERVICES:
        url = urlsplit(settings.service_url(service))
        assert url.hostname in services, f"{service.upper()}_URL: no Service {url.hostname}"
        ports = {p["port"] for p in services[url.hostname]["spec"]["ports"]}
        assert url.port in ports, f"{service.upper()}_URL: Service {url.hostname} has no port {url.port}"
        selected = [n for n, d in deployments.items()
                    if selects(services[url.hostname]["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert selected == [f"{service}-web"]


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert found, f"no container port named {port!r}"
    return found[0]


def test_web_pods_are_probed_on_the_port_they_serve(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    envs = environments(rendered, secret_template)
    for name, deployment in of_kind(rendered, "Deployment").items():
        container = only_container(deployment)
        if component(deployment) != "web":
            continue
        served = Settings.from_env(envs[name]).port  # `twincity <service> web` binds 0.0.0.0:$PORT
        assert [p["containerPort"] for p in container["ports"]] == [served], f"{name}: container port"
        probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
        for probe, path in probes.items():
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe} must ask {path}"
            assert named_port(container, get["port"]) == served, f"{name}: {probe} asks another port"


def test_workers_serve_only_metrics_and_have_no_probes(rendered: list[dict[str, Any]]) -> None:
    config = of_kind(rendered, "ConfigMap")[CONFIG_MAP]["data"]
    for name, deployment in of_kind(rendered, "Deployment").items():
        if component(deployment) == "worker":
            container = only_container(deployment)
            assert [(p["name"], p["containerPort"]) for p in container.get("ports", [])] == [
                ("metrics", int(config["WORKER_METRICS_PORT"]))], f"{name}: a worker serves only /metrics"
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert probe not in container, f"{name}: a worker has no HTTP to probe (see its manifest's comment)"


def test_no_host_ports_or_host_namespaces(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        for spec in pod_specs(obj):
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                assert not spec.get(flag), f"{obj['metadata']['name']}: {flag}"
        for container in containers(obj):
            for port in container.get("ports", []):
                assert "hostPort" not in port, f"{obj['metadata']['name']}: hostPort ties a pod to a node"


def test_pods_run_locked_down_as_the_image_user(rendered: list[dict[str, Any]]) -> None:
    uids = set()
    uids |= {int(u) for u in re.findall(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text())}
    assert len(uids) == 1, f"the Dockerfile names one user: {uids}"
    for name, deployment in of_kind(rendered, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] in uids, f"{name}: run as the image's user"
        assert spec.get("automountServiceAccountToken") is False, f"{name}: it never calls the Kubernetes API"
        assert spec.get("enableServiceLinks") is False, f"{name}: no <SERVICE>_PORT variables beside ours"
        container = only_container(deployment)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp must be a writable emptyDir"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: resources.{kind}"


def seconds_in(path: Path, pattern: str) -> int:
    found = re.findall(pattern, path.read_text())
    assert len(found) == 1, f"{path}: expected one match of {pattern!r}; update this test with the code"
    return int(found[0])


def test_pods_get_time_to_stop_cleanly(rendered: list[dict[str, Any]]) -> None:
    graceful = seconds_in(Path(cli.__file__), r'"graceful_timeout":\s*(\d+)')
    worker_deadline = seconds_in(ROOT / "services" / "runtime.py", r"deadline = time\.monotonic\(\) \+ (\d+)")
    for name, deployment in of_kind(rendered, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] == 35, name
        container = only_container(deployment)
        if component(deployment) == "web":
            pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep"
            assert int(pre_stop[1]) + graceful < spec["terminationGracePeriodSeconds"], f"{name}: preStop + gunicorn"
        else:
            assert worker_deadline < spec["terminationGracePeriodSeconds"], f"{name}: the worker's stop deadline"


def test_every_service_selects_exactly_one_deployment(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        matched = [n for n, d in deployments.items() if selects(selector, d["spec"]["template"]["metadata"]["labels"])]
        assert matched == [name], f"Deployment {name}'s selector also matches {matched}"
    for name, service in of_kind(rendered, "Service").items():
        matched = [d for d in deployments.values()
                   if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert len(matched) == 1 and matched[0]["metadata"]["name"] == name, f"Service {name} selects {matched}"
        assert component(matched[0]) == "web", f"Service {name} must select a web Deployment"
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name}: the Ingress is the way in"
        container = only_container(matched[0])
        for port in service["spec"]["ports"]:
            assert named_port(container, port["targetPort"]) == container["ports"][0]["containerPort"]


def test_every_web_deployment_has_an_autoscaler_and_a_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    web = {n for n, d in deployments.items() if component(d) == "web"}
    hpas = of_kind(rendered, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == web
    for hpa in hpas.values():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], "two pods, so a drain never empties it"
    pdbs = of_kind(rendered, "PodDisruptionBudget")
    for name in web:
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        budgets = [p for p in pdbs.values() if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(budgets) == 1, f"{name}: one PodDisruptionBudget"
        assert "minAvailable" not in budgets[0]["spec"], f"{name}: maxUnavailable never blocks a node drain"


def test_every_worker_scales_on_its_own_queue(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    deployments = of_kind(rendered, "Deployment")
    envs = environments(rendered, secret_template)
    auths = of_kind(rendered, "TriggerAuthentication")
    scaled = of_kind(rendered, "ScaledObject")
    workers = {n for n, d in deployments.items() if component(d) == "worker"}
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == workers
    for obj in scaled.values():
        target = obj["spec"]["scaleTargetRef"]["name"]
        service = only_container(deployments[target])["command"][1]
        settings = Settings.from_env(envs[target])
        queue = bus.Topology(service, settings.exchange, (), settings.retry_delays_ms, settings.namespace).queue
        assert queue == f"{service}.events"
        # Relaying the outbox and the periodic tasks run in the worker: it must never scale to zero.
        assert 1 <= obj["spec"]["minReplicaCount"] <= obj["spec"]["maxReplicaCount"]
        for trigger in obj["spec"]["triggers"]:
            assert trigger["metadata"]["queueName"] == queue, f"{obj['metadata']['name']} watches another queue"
            auth = auths[trigger["authenticationRef"]["name"]]
            for ref in auth["spec"]["secretTargetRef"]:
                assert ref["name"] == SECRET and ref["key"] in secret_template["stringData"]
            # KEDA measures the broker the worker consumes from.
            host = next(r["key"] for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "host")
            assert secret_template["stringData"][host] == settings.amqp_url


def test_only_the_gateway_is_reachable_from_outside(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    deployments = of_kind(rendered, "Deployment")
    gateway_labels = deployments["gateway"]["spec"]["template"]["metadata"]["labels"]
    for name, deployment in deployments.items():
        if component(deployment) != "web" or name == "gateway":
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies.values() if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert len(mine) == 1, f"{name}: one NetworkPolicy, admitting the gateway"
        rules = mine[0]["spec"]["ingress"]
        assert any(selects(peer.get("podSelector", {}).get("matchLabels", {}), gateway_labels)
                   for rule in rules for peer in rule["from"]), f"{name}: the gateway must be let in"
        ports = {p["port"] for rule in rules for p in rule["ports"]}
        assert ports == {only_container(deployment)["ports"][0]["containerPort"]}


@pytest.fixture(scope="module")
def gateway_routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every URL rule of the gateway's app, built in memory (no broker, no MongoDB)."""
    from gateway.bootstrap import create_app

    url = "mongomock://k8s-test"
    settings = Settings(mongo_url=url, db_prefix=tmp_path_factory.mktemp("k8s").name.lower()[:40],
                        service_urls=tuple((s, f"http://{s}-web:8000") for s in QUEUE_SERVICES))
    app = create_app(settings)
    try:
        return {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    finally:
        app.extensions["twincity.runtime"].relay.stop(timeout=5)
        store.forget(url)


def routed(path: str, ingress: dict[str, Any]) -> bool:
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            prefix = entry["path"]
            if entry["pathType"] == "Exact" and path == prefix:
                return True
            if entry["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                return True
    return False


def test_the_ingress_routes_the_public_paths_and_nothing_else(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any], gateway_routes: set[str]
) -> None:
    ingresses = of_kind(rendered, "Ingress")
    assert list(ingresses) == ["gateway"]
    ingress = ingresses["gateway"]
    internal = {"/healthz", "/readyz", "/metrics"}
    assert internal <= gateway_routes
    for route in gateway_routes:
        path = re.sub(r"<[^>]+>", "x", route)  # /unsubscribe/<token> -> /unsubscribe/x
        if route in internal:
            assert not routed(path, ingress), f"the Ingress exposes {route}: keep it inside the cluster"
        else:
            assert routed(path, ingress), f"the gateway serves {route}, but the Ingress does not route it"
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            assert entry["backend"]["service"]["name"] == "gateway"
            probe = entry["path"] if entry["pathType"] == "Exact" else entry["path"].rstrip("/") + "/x"
            assert any(re.fullmatch(re.sub(r"<[^>]+>", "[^/]+", r), probe) or r == entry["path"]
                       for r in gateway_routes), f"the Ingress routes {entry['path']}, which the gateway does not serve"
    public = urlsplit(Settings.from_env(environments(rendered, secret_template)["gateway"]).public_url)
    assert {rule["host"] for rule in ingress["spec"]["rules"]} == {public.hostname}, "TWINCITY_PUBLIC_URL's host"
    assert public.scheme == "https" and all(public.hostname in t["hosts"] for t in ingress["spec"]["tls"])


# --- the production overlay -------------------------------------------------------------------------


def test_production_pins_every_image(production: list[dict[str, Any]]) -> None:
    for obj in production:
        for container in containers(obj):
            _, tag, digest = split_image(container["image"])
            assert digest or (tag and tag != "latest"), (
                f"{obj['metadata']['name']}: {container['image']} is not pinned (no tag, or `latest`)")


def test_production_replicas_stay_within_their_autoscaler(production: list[dict[str, Any]]) -> None:
    bounds = {h["spec"]["scaleTargetRef"]["name"]: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"])
              for h in of_kind(production, "HorizontalPodAutoscaler").values()}
    bounds |= {s["spec"]["scaleTargetRef"]["name"]: (s["spec"]["minReplicaCount"], s["spec"]["maxReplicaCount"])
               for s in of_kind(production, "ScaledObject").values()}
    for name, deployment in of_kind(production, "Deployment").items():
        assert name in bounds, f"{name}: no autoscaler"
        if "replicas" in deployment["spec"]:
            low, high = bounds[name]
            assert low <= deployment["spec"]["replicas"] <= high, f"{name}: replicas outside {low}..{high}"


def test_the_readme_applies_the_production_overlay() -> None:
    readme = (K8S / "README.md").read_text()
    assert "kubectl apply -k deploy/k8s/overlays/production" in readme
    commands = [line.split(" -- ", 1)[1] for line in readme.splitlines() if " -- twincity " in line]
    assert commands, "the README shows how to run the operator commands in a pod"
    for command in commands:
        resolve(shlex.split(command))
