"""The deployment files (deployment/docker, deployment/kubernetes) are valid and agree with the code.

- Every Kubernetes manifest validates against the Kubernetes JSON schemas (kubernetes-validate,
  offline, strict: unknown fields fail) for the oldest and the newest version we support;
  custom resources (prometheus-operator) and the kustomization are skipped with the reason.
- Every environment variable given to the platform's containers (compose and Kubernetes,
  including the ConfigMap's keys) is a setting of config/settings.py, and the values parse
  as Settings, so the manifests cannot drift from the settings.
- docker-compose.yml: services, Redis AOF flags, health checks, volumes and mounts point at files
  that exist; `docker compose config` when docker compose is installed.
- The Dockerfiles copy files that exist, run as non-root, generate the protos like the Makefile.
- healthcheck.py answers correctly against a real gRPC health service (plaintext, TLS, mutual TLS)
  and a real /metrics endpoint.
"""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deployment" / "docker"
K8S = ROOT / "deployment" / "kubernetes"
COMPOSE = DOCKER / "docker-compose.yml"
HEALTHCHECK = DOCKER / "healthcheck.py"

SETTINGS_NAMES = frozenset(name.upper() for name in Settings.model_fields)
# Read by libraries, not by the platform: allowed in the containers' environment.
LIBRARY_ENV = frozenset({"NUMBA_NUM_THREADS", "OMP_NUM_THREADS"})
# Security settings the deployment turns on (TLS on the gRPC port, API keys).
SECURITY_ENV = frozenset({"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "API_KEYS_FILE"})
APP_IMAGES = ("gpu-quant:cpu", "gpu-quant:cuda")
COMPOSE_APP_SERVICES = ("server", "worker", "worker-gpu", "inference")
# Oldest Kubernetes we claim to support (native gRPC probes, autoscaling/v2, policy/v1 are GA) and
# the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29.0", "latest")


# --- loading -------------------------------------------------------------------------------------

def _manifest_files() -> list[Path]:
    """The Kubernetes objects (kustomization.yaml is kustomize's build file, checked on its own)."""
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in _manifest_files():
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.name}#{index}", doc))
    return docs


DOCUMENTS = _documents()


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc.get("kind") == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in _by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "StatefulSet"):
        for doc in _by_kind(kind):
            yield f"{kind}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def _app_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for where, spec in _pod_specs():
        for container in spec["containers"]:
            if container["image"] in APP_IMAGES:
                yield f"{where}/{container['name']}", container


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (secret values made up)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"unexpected envFrom {source}"
        env.update(_named("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item["value"] if "value" in item else "made-up-secret-value"
    return env


def _settings_from(env: dict[str, str]) -> Settings:
    values = {name.lower(): value for name, value in env.items() if name in SETTINGS_NAMES}
    return Settings(_env_file=None, **values)


# --- Kubernetes: schema validation ---------------------------------------------------------------

def test_manifests_are_there() -> None:
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "StatefulSet",
            "HorizontalPodAutoscaler", "PodDisruptionBudget", "PersistentVolumeClaim"} <= kinds
    for where, doc in DOCUMENTS:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), where


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("where,doc", DOCUMENTS, ids=[where for where, _ in DOCUMENTS])
def test_manifest_validates_against_kubernetes_schema(where: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements-test.txt")
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        pytest.skip(f"{doc['kind']} is a prometheus-operator custom resource: no schema in "
                    "kubernetes-validate (structure checked by test_monitors_select_the_platform)")
    version = kubernetes_validate.latest_version() if version == "latest" else version
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(part) for part in exc.path)
        pytest.fail(f"{where} ({doc['kind']} {doc['metadata']['name']}) invalid for Kubernetes {version} "
                    f"at {path or '<root>'}: {exc.message}")


def test_kustomization_lists_the_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists missing {name}"
    # Everything but the secret placeholders and the CRD-based monitors is applied by `kubectl apply -k`.
    expected = {path.name for path in _manifest_files()} - {"secret.yaml", "servicemonitor.yaml"}
    assert listed == expected
    for _, doc in DOCUMENTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == kustomization["namespace"], doc["metadata"]["name"]


# --- Kubernetes: agreement with the settings and with each other ---------------------------------

def test_configmap_keys_are_settings() -> None:
    data = _named("ConfigMap", "gq-settings")["data"]
    unknown = sorted(set(data) - SETTINGS_NAMES)
    assert not unknown, f"gq-settings keys that are not settings of config/settings.py: {unknown}"
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    settings = _settings_from(data)
    assert settings.redis_embedded == "never" and settings.redis_configured


@pytest.mark.parametrize("where,container", list(_app_containers()), ids=[w for w, _ in _app_containers()])
def test_kubernetes_env_names_are_settings(where: str, container: dict[str, Any]) -> None:
    env = _container_env(container)
    unknown = sorted(set(env) - SETTINGS_NAMES - LIBRARY_ENV - SECURITY_ENV)
    assert not unknown, f"{where} sets variables that are not settings of config/settings.py: {unknown}"
    settings = _settings_from(env)  # the values parse (types, ranges, literals)
    if "worker" in container["args"]:
        assert settings.worker_processes == 1


def test_security_env_names_are_settings() -> None:
    used = set()
    for _, container in _app_containers():
        used |= set(_container_env(container)) & SECURITY_ENV
    for name in COMPOSE_APP_SERVICES:
        used |= set(_compose()["services"][name]["environment"]) & SECURITY_ENV
    assert {"TLS_CERT_FILE", "TLS_KEY_FILE", "API_KEYS_FILE"} <= used, "security must be on in the deployment"
    missing = sorted(used - SETTINGS_NAMES)
    assert not missing, (f"the deployment turns on security with {missing}, which config/settings.py does not "
                         "define: align the names in deployment/ with the security settings")


def test_server_ports_and_probes_follow_the_settings() -> None:
    settings = _settings_from(_named("ConfigMap", "gq-settings")["data"])
    server = _named("Deployment", "gq-server")["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in server["ports"]}
    assert ports == {"grpc": settings.grpc_port, "metrics": settings.prometheus_port}
    readiness = server["readinessProbe"]["exec"]["command"]
    assert readiness[1] == "/app/deployment/docker/healthcheck.py" and readiness[2:4] == ["grpc", str(settings.grpc_port)]
    assert server["livenessProbe"]["tcpSocket"]["port"] == "grpc"  # not health: it follows Redis
    service = _named("Service", "gq-server")
    assert {port["targetPort"] for port in service["spec"]["ports"]} == {"grpc", "metrics"}
    for name in ("gq-worker-cpu", "gq-worker-gpu"):
        worker = _named("Deployment", name)["spec"]["template"]["spec"]
        container = worker["containers"][0]
        assert container["ports"] == [{"name": "metrics", "containerPort": settings.prometheus_port + 1}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        # SIGTERM: running jobs get SHUTDOWN_GRACE_SECONDS, the pod must outlive it.
        assert worker["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds


def test_every_container_has_requests_and_limits() -> None:
    for where, spec in _pod_specs():
        for container in spec["containers"]:
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where}/{container['name']} {bound}"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True, where


def test_gpu_worker_asks_for_one_gpu_on_gpu_nodes() -> None:
    spec = _named("Deployment", "gq-worker-gpu")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "gpu-quant:cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    env = _container_env(container)
    assert env["COMPUTE_DEVICE"] == "gpu" and env["GPU_DEVICE_ID"] == "0"
    cpu = _named("Deployment", "gq-worker-cpu")["spec"]["template"]["spec"]["containers"][0]
    assert _container_env(cpu)["COMPUTE_DEVICE"] == "cpu" and "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_selectors_and_references_resolve() -> None:
    pods = {}
    for kind in ("Deployment", "StatefulSet"):
        for doc in _by_kind(kind):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
            pods[doc["metadata"]["name"]] = labels
    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pods.values())
    for service in _by_kind("Service"):
        assert selects(service["spec"]["selector"]), service["metadata"]["name"]
    for pdb in _by_kind("PodDisruptionBudget"):
        assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert any(p["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gq-server"}
               for p in _by_kind("PodDisruptionBudget"))
    for hpa in _by_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] in pods and target["kind"] == "Deployment"
        metric = hpa["spec"]["metrics"][0]
        assert metric["type"] == "External" and metric["external"]["metric"]["name"] == "queue_depth"
    # Volumes and env references point at objects defined here (Secrets: in secret.yaml).
    claims = {doc["metadata"]["name"] for doc in _by_kind("PersistentVolumeClaim")}
    config_maps = {doc["metadata"]["name"] for doc in _by_kind("ConfigMap")}
    secrets = {doc["metadata"]["name"]: doc for doc in _by_kind("Secret")}
    for where, spec in _pod_specs():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, where
        for container in spec["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], f"{where}: {ref}"
    # The files the server is pointed at are keys of the mounted secrets.
    server = _named("Deployment", "gq-server")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in server["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in server["volumes"]}
    for name, path in _container_env(server["containers"][0]).items():
        if name in SECURITY_ENV:
            directory, key = path.rsplit("/", 1)
            assert key in secrets[volumes[mounts[directory]]["secret"]["secretName"]]["stringData"], name


def test_redis_statefulset_keeps_an_aof_on_a_volume() -> None:
    conf = _named("ConfigMap", "gq-redis-config")["data"]["redis.conf"]
    lines = {line.strip() for line in conf.splitlines()}
    assert {"appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction", "dir /data"} <= lines
    redis = _named("StatefulSet", "gq-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert "$(REDIS_PASSWORD)" in container["args"]
    service = _named("Service", "gq-redis")
    assert service["spec"]["clusterIP"] == "None" and redis["spec"]["serviceName"] == "gq-redis"
    host = _named("ConfigMap", "gq-settings")["data"]["REDIS_HOST"]
    assert host.startswith(f"gq-redis-0.gq-redis.{redis['metadata']['namespace']}.")


def test_monitors_select_the_platform() -> None:
    monitors = [doc for _, doc in DOCUMENTS if doc["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {doc["kind"] for doc in monitors} == {"ServiceMonitor", "PodMonitor"}
    service = _named("ServiceMonitor", "gq-server")
    assert service["spec"]["selector"]["matchLabels"].items() <= _named("Service", "gq-server")["metadata"]["labels"].items()
    assert service["spec"]["endpoints"][0]["port"] == "metrics"
    pods = _named("PodMonitor", "gq-workers")["spec"]
    for name in ("gq-worker-cpu", "gq-worker-gpu"):
        labels = _named("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pods["selector"]["matchLabels"].items() <= labels.items()


# --- docker compose ------------------------------------------------------------------------------

def test_compose_services_and_redis_aof() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"redis", "server", "gateway", "worker", "worker-gpu", "inference", "prometheus", "grafana"}
    assert services["inference"]["command"] == ["inference"] and services["inference"]["profiles"] == ["gpu"]
    assert services["gateway"]["command"] == ["gateway"] and "8080:8080" in services["gateway"]["ports"]
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command and "--requirepass" in command
    assert "redis-data:/data" in services["redis"]["volumes"] and "redis-data" in compose["volumes"]
    assert services["server"]["command"] == ["serve"]
    assert services["worker"]["command"] == ["worker"] and services["worker"]["deploy"]["replicas"] == 2
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["command"] == ["worker"]
    assert gpu["build"]["dockerfile"] == "deployment/docker/Dockerfile.cuda"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name
    assert services["server"]["healthcheck"]["test"][-1] == "grpc"
    for name in ("worker", "worker-gpu"):
        assert services[name]["healthcheck"]["test"][-2:] == ["metrics", "9091"]
        assert services[name]["environment"]["WORKER_PROCESSES"] == "1"  # metrics on PROMETHEUS_PORT + 1
    for name in COMPOSE_APP_SERVICES:  # workers drain within SHUTDOWN_GRACE_SECONDS
        assert "models:/data/models" in services[name]["volumes"]


@pytest.mark.parametrize("service", COMPOSE_APP_SERVICES)
def test_compose_env_names_are_settings(service: str) -> None:
    env = _compose()["services"][service]["environment"]
    unknown = sorted(set(env) - SETTINGS_NAMES - LIBRARY_ENV - SECURITY_ENV)
    assert not unknown, f"compose service {service} sets variables that are not settings: {unknown}"
    values = {name: re.sub(r"\$\{[^}]*\}", "made-up-secret-value", str(value)) for name, value in env.items()}
    settings = _settings_from(values)
    assert settings.redis_host == "redis" and settings.redis_embedded == "never"


def test_compose_files_and_mounts_exist() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):  # bind mount of a repository path
                assert (DOCKER / source).resolve().exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        for secret in service.get("secrets", []):
            assert secret["source"] in compose["secrets"]
    prometheus = DOCKER / "../../monitoring/prometheus"
    assert (prometheus / "prometheus.yml").is_file() and (prometheus / "alerts.yml").is_file()
    # ${VAR} substitutions are the ones env.example documents.
    used = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    documented = set(re.findall(r"^([A-Z_]+)=", (DOCKER / "env.example").read_text(), re.M))
    assert used == documented, f"compose substitutions {sorted(used)} vs env.example {sorted(documented)}"


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed: `docker compose config` not run (the YAML is checked above)")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (`docker compose` is an unknown command): "
                    f"`docker compose config` not run ({(probe.stderr or probe.stdout).strip().splitlines()[0]})")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "x"}
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--profile", "gpu", "config", "--quiet",
                             "--no-interpolate"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


# --- Dockerfiles ---------------------------------------------------------------------------------

def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def _let_in(source: str, allowed: list[str]) -> bool:
    """Whether a `!pattern` of the dockerignore (which starts with `**`) re-includes ``source``."""
    return any(source == pattern or pattern.startswith(source + "/") or fnmatch.fnmatch(source, pattern)
               for pattern in allowed)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_references_existing_files(name: str) -> None:
    dockerfile = DOCKER / name
    instructions = _instructions(dockerfile)
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    copies = [args.split() for kind, args in instructions if kind == "COPY"]
    assert copies
    for parts in copies:
        for source in [part for part in parts[:-1] if not part.startswith("--")]:
            matches = list(ROOT.glob(source.rstrip("/")))
            assert matches, f"{name}: COPY {source} matches nothing in the repository"
            # ... and the dockerignore lets it into the build context.
            assert _let_in(source.rstrip("/"), allowed), f"{name}.dockerignore excludes {source}"
    requirements = "requirements.txt" if name == "Dockerfile" else "requirements-gpu.txt"
    assert any(kind == "RUN" and f"-r {requirements}" in args for kind, args in instructions)
    makefile_flags = re.search(r"grpc_tools\.protoc (.*) \$<", (ROOT / "Makefile").read_text()).group(1)
    assert any(kind == "RUN" and f"grpc_tools.protoc {makefile_flags} api_proto/*.proto" in args
               for kind, args in instructions), "protos are not generated like the Makefile does"
    user = [args for kind, args in instructions if kind == "USER"]
    assert user and not user[-1].startswith(("root", "0")), "the image must run as a non-root user"
    assert any(kind == "HEALTHCHECK" and "healthcheck.py" in args for kind, args in instructions)
    exposed = {port for kind, args in instructions if kind == "EXPOSE" for port in args.split()}
    assert {"50051", "9090", "9091"} <= exposed
    base = next(args for kind, args in instructions if kind == "FROM")
    if name == "Dockerfile":
        assert base.startswith("python:3.11-slim")
    else:
        default = next(args for kind, args in instructions if kind == "ARG" and args.startswith("CUDA_IMAGE="))
        assert default.split("=", 1)[1].startswith("nvidia/cuda:12.") and "runtime" in default


def test_hadolint_if_installed() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (optional linter; the Dockerfiles are checked above)")
    result = subprocess.run([hadolint, "--failure-threshold", "error", str(DOCKER / "Dockerfile"),
                             str(DOCKER / "Dockerfile.cuda")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- healthcheck.py against real endpoints -------------------------------------------------------

def _run_healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def _health_server(credentials: Any = None) -> tuple[Any, Any, int]:
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = (server.add_secure_port("127.0.0.1:0", credentials) if credentials
            else server.add_insecure_port("127.0.0.1:0"))
    server.start()
    return server, servicer, port


def test_healthcheck_grpc_plaintext() -> None:
    from grpc_health.v1 import health_pb2
    server, servicer, port = _health_server()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        result = _run_healthcheck(env={"GRPC_PORT": str(port)})
        assert result.returncode == 0 and "SERVING" in result.stdout, result.stdout + result.stderr
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # what the server says when Redis is down
        result = _run_healthcheck("grpc", str(port))
        assert result.returncode == 1 and "NOT_SERVING" in result.stdout
    finally:
        server.stop(None)
    result = _run_healthcheck("grpc", str(port), "--timeout", "0.5")
    assert result.returncode == 1 and ("UNAVAILABLE" in result.stdout or "DEADLINE" in result.stdout)


def test_healthcheck_metrics() -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    http, _thread = start_http_server(0, addr="127.0.0.1", registry=CollectorRegistry())
    port = http.server_address[1]
    try:
        assert _run_healthcheck("metrics", str(port)).returncode == 0
    finally:
        http.shutdown()
        http.server_close()
    assert _run_healthcheck("metrics", str(port), "--timeout", "0.5").returncode == 1


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A private CA and a server certificate for localhost with server and client usage, made
    exactly as deployment/docker/secrets/README.md tells operators to."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: the TLS health check is not exercised")
    directory = tmp_path_factory.mktemp("tls")
    extensions = directory / "ext.cnf"
    extensions.write_text("subjectAltName=DNS:localhost,DNS:server,IP:127.0.0.1\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n")
    for command in (
            f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.crt",
            f"req -newkey rsa:2048 -nodes -subj /CN=server -keyout tls.key -out tls.csr",
            f"x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out tls.crt -extfile ext.cnf"):
        subprocess.run([openssl, *command.split()], cwd=directory, check=True, capture_output=True)
    return directory


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_healthcheck_grpc_tls(certificates: Path, mutual: bool) -> None:
    import grpc
    from grpc_health.v1 import health_pb2
    pair = ((certificates / "tls.key").read_bytes(), (certificates / "tls.crt").read_bytes())
    credentials = grpc.ssl_server_credentials([pair], root_certificates=(certificates / "ca.crt").read_bytes()
                                              if mutual else None, require_client_auth=mutual)
    server, servicer, port = _health_server(credentials)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    env = {"GRPC_PORT": str(port), "TLS_CERT_FILE": str(certificates / "tls.crt"),
           "TLS_KEY_FILE": str(certificates / "tls.key")}
    if mutual:
        env["TLS_CLIENT_CA_FILE"] = str(certificates / "ca.crt")
    try:
        result = _run_healthcheck("--ca", str(certificates / "ca.crt"), env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        # A plaintext check against the TLS port fails, as the kubelet's native probe would.
        assert _run_healthcheck("--timeout", "1", env={"GRPC_PORT": str(port)}).returncode == 1
        if mutual:  # without its client certificate the server refuses the check
            env.pop("TLS_CLIENT_CA_FILE")
            assert _run_healthcheck("--ca", str(certificates / "ca.crt"), "--timeout", "2", env=env).returncode == 1
    finally:
        server.stop(None)
