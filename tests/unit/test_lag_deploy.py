"""The Prometheus and Grafana files parse and only use metrics the lag monitor exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from serving.lag.metrics import LagMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bstreamrag_[a-z_]+\b")
# Metrics from other components that dashboards may mention; none today.
OTHER_METRICS: set[str] = set()


def _exported() -> set[str]:
    registry = CollectorRegistry()
    LagMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_prometheus_scrapes_api_pipeline_and_llm() -> None:
    config = _load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: [t for sc in job["static_configs"] for t in sc["targets"]] for name, job in jobs.items()}
    assert targets["streamrag-api"] == ["api:8000"]
    assert jobs["streamrag-api"]["metrics_path"] == "/metrics"
    assert targets["streamrag-pipeline"] == ["pipeline:9100"]
    assert targets["streamrag-llm"] == ["llm:18090"]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_alert_rules_use_exported_metrics() -> None:
    rules = _load_yaml(DEPLOY / "prometheus" / "rules" / "streamrag-lag.yml")
    exported = _exported()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"StreamragConsumerGroupStalled", "StreamragFreshnessP99High", "StreamragDeadLetters"} <= {
        a["alert"] for a in alerts
    }
    for alert in alerts:
        used = set(METRIC.findall(alert["expr"]))
        assert used, alert["alert"]
        assert used <= exported | OTHER_METRICS, (alert["alert"], used - exported)


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_grafana_dashboard_covers_lag_status_freshness_and_dlq() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamrag.json").read_text())
    exported = _exported()
    used = {m for expr in _exprs(dashboard) for m in METRIC.findall(expr)}
    assert used <= exported | OTHER_METRICS, used - exported
    assert {
        "streamrag_consumergroup_lag",
        "streamrag_consumergroup_lag_seconds",
        "streamrag_consumergroup_status",
        "streamrag_freshness_seconds_bucket",
        "streamrag_dlq_depth",
    } <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    status_panel = next(p for p in dashboard["panels"] if p["title"] == "Group status")
    mapping = status_panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in mapping.items()} == {
        "0": "OK",
        "1": "LAGGING",
        "2": "STALLED",
        "3": "STOPPED",
        "4": "REWOUND",
    }


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    dashboards = _load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamrag.yaml")
    assert dashboards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = _load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    prometheus = sources["datasources"][0]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamrag.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == prometheus["uid"]
