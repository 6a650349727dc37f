"""monitoring/: Prometheus config and alert rules (promtool), Grafana provisioning and dashboards.

The promtool checks need Debian's `prometheus` package (see README, "Monitoring"); without it
they are skipped with that reason. The structural checks below run everywhere: every metric an
alert or a panel queries is one this code base exports, every alert has a runbook section and a
firing unit test.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.system_packages import commands

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
GRAFANA_DIR = ROOT / "monitoring" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
DATASOURCE_UID = "quant-prometheus"
# Metrics of other exporters a panel may show when deployed (empty otherwise), and Prometheus's own.
EXTERNAL_METRICS = {"up", "DCGM_FI_DEV_GPU_TEMP"}
@pytest.fixture(scope="session")
def promtool_path() -> str:
    """promtool (Debian's prometheus package, installed with apt-get when missing)."""
    return commands(("promtool",), ("prometheus",))[0]

# Values for Grafana's template variables when a panel query is run outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                     "$device": ".*", "$method": ".*"}


# ------------------------------------------------------------------ helpers (also used by
# tests/integration/test_prometheus_scrape.py)
def load_rules() -> dict:
    return yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())


def alert_rules() -> list[dict]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for group in load_rules()["groups"] for rule in group["rules"] if "record" in rule}


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana variables substituted) for every target."""
    queries = []
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], substitute_variables(target["expr"])))
    return queries


def dashboard_variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, variable, metric selector) of each `label_values(selector, label)`."""
    found = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, f"{path.name}: variable {variable['name']} is not label_values(selector, label)"
            found.append((path.name, match.group(2), match.group(1)))
    return found


def substitute_variables(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, matchers, ranges, grouping clauses and
    function names removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def exported_metric_names() -> set[str]:
    """Every sample name the server's and the workers' registries can expose."""
    from prometheus_client import CollectorRegistry
    from utils.monitoring import Metrics, QueueCollector

    class EmptyQueue:
        def stats(self, task_type):
            return {}

        def depth(self):
            return [("backtest", "normal", 0, 0)]

        def dead_letter_size(self, task_type):
            return 0

    registry = CollectorRegistry()
    Metrics(registry)
    registry.register(QueueCollector(EmptyQueue()))
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# ------------------------------------------------------------------ promtool
def promtool(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([path, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_promtool_check_config(promtool_path):
    result = promtool(promtool_path, "check", "config", "monitoring/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules(promtool_path):
    result = promtool(promtool_path, "check", "rules", "monitoring/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests(promtool_path):
    result = promtool(promtool_path, "test", "rules", "monitoring/prometheus/tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ alert rules
def test_every_alert_has_annotations_and_a_runbook_section():
    anchors = github_anchors(OPERATIONS_DOC.read_text())
    for rule in alert_rules():
        annotations = rule.get("annotations", {})
        assert {"summary", "description", "runbook"} <= annotations.keys(), rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, rule["alert"]
        doc, _, anchor = annotations["runbook"].partition("#")
        assert doc == "docs/operations.md" and anchor == rule["alert"].lower(), annotations["runbook"]
        assert anchor in anchors, f"docs/operations.md has no section for {rule['alert']}"


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_when_healthy():
    suite = yaml.safe_load((PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text())
    fired, quiet_when_healthy = set(), set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                fired.add(check["alertname"])
            elif case["name"].startswith("healthy"):
                quiet_when_healthy.add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names == fired, f"alerts without a firing test: {names - fired}"
    assert names == quiet_when_healthy, f"alerts not checked in the healthy case: {names - quiet_when_healthy}"


def test_alerts_query_only_metrics_we_export():
    known = exported_metric_names() | recorded_names() | EXTERNAL_METRICS
    groups = load_rules()["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.99, sum by (method, le) (rate(grpc_request_duration_seconds_bucket'
                        '{method!~"A|B"}[5m]))) > 2.5 and sum by (method) (x_total) > 1e9') == {
        "grpc_request_duration_seconds_bucket", "x_total"}
    assert metric_names('max by (device) (a / b{device=~"$device"})') == {"a", "b"}


def test_scrape_targets_follow_the_port_convention():
    from config.settings import Settings
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    server_port = Settings.model_fields["prometheus_port"].default
    server_targets = [t for c in jobs["quant-server"]["static_configs"] for t in c["targets"]]
    assert [int(t.rsplit(":", 1)[1]) for t in server_targets] == [server_port]
    worker_ports = {c["port"] for c in jobs["quant-workers"]["dns_sd_configs"]}
    assert worker_ports == {server_port + 1}  # worker 0 of each worker container
    compose = yaml.safe_load(Path("deployment/docker/docker-compose.yml").read_text())
    assert server_targets[0].split(":")[0] in compose["services"]
    assert set(jobs["quant-workers"]["dns_sd_configs"][0]["names"]) <= set(compose["services"])
    assert config["rule_files"] == ["alerts.yml"]


# ------------------------------------------------------------------ Grafana
def test_provisioning_points_at_prometheus_and_the_dashboards():
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["uid"] == DATASOURCE_UID
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "quant-platform.yml").read_text())
    assert providers["providers"][0]["type"] == "file"


def test_dashboards_are_well_formed():
    assert {path.name for path in DASHBOARDS} == {"gpu-resources.json", "service-performance.json", "business.json"}
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), path.name
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (path.name, panel["title"])
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), (path.name, panel["title"])
            assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])


def test_dashboards_query_only_metrics_we_export():
    known = exported_metric_names() | recorded_names() | EXTERNAL_METRICS
    for name, title, expr in dashboard_queries():
        unknown = metric_names(expr) - known
        assert not unknown, f"{name} / {title}: unknown metrics {unknown}"
    for name, _label, selector in dashboard_variable_queries():
        assert metric_names(selector) <= known, (name, selector)


def test_dashboards_cover_the_guide_metrics():
    exprs = " ".join(expr for _, _, expr in dashboard_queries())
    for metric in ("gpu_utilization", "gpu_memory_used_bytes", "backtest_tasks_total", "realtime_streams_active",
                   "ml_training_tasks_total", "cache_hit_rate", "queue_depth", "dead_letter_jobs",
                   "grpc_request_duration_seconds_bucket", "grpc_requests_total", "ml_predictions_total"):
        assert metric in exprs, metric


def test_gpu_dashboard_says_no_gpu_rather_than_zero():
    """Hosts without a GPU export gpu_metrics_available{source="none"} 0 and no gpu_utilization:
    a stat panel maps it to 'no GPU' beside the per-device utilisation and memory panels."""
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "gpu-resources.json").read_text())
    by_expr = {target["expr"]: panel for panel in panels(dashboard) for target in panel.get("targets", [])}
    (stat,) = [panel for expr, panel in by_expr.items() if "gpu_metrics_available" in expr]
    assert stat["type"] == "stat"
    mappings = stat["fieldConfig"]["defaults"]["mappings"]
    assert any(m["options"].get("0", {}).get("text") == "no GPU" for m in mappings)
    assert any("gpu_utilization" in expr and "cpu" not in expr for expr in by_expr)
    assert any("gpu_memory_used_bytes" in expr for expr in by_expr)
    assert not any('kind="cpu"' in expr for expr in by_expr)
