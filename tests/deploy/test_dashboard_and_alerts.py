"""The Grafana dashboard and the Prometheus alert rules in deploy/: they parse, and every metric they name is
one the router or a replica exports (promtool is not at hand, so the PromQL is read here: each expression is
stripped of strings, label matchers, label lists and ranges, and what names remain outside function calls
and keywords are metric names)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from hybrid.engine.metrics import ReplicaMetrics
from hybrid.router.metrics import RouterMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "hybrid.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# What a family of each type exports, as prometheus_client names its samples.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exported_names() -> set[str]:
    """Every sample name the router's and a replica's registries can export, read from their definitions (a
    labelled family exports nothing until a label set is used, so a scrape would miss some)."""
    names = set()
    for registry in (RouterMetrics(CollectorRegistry()).registry, ReplicaMetrics(CollectorRegistry()).registry):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings: label values, label_replace's arguments
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = LABEL_LISTS.sub("", text)
    text = re.sub(r"\$__\w+", "", text)  # Grafana's own variables
    names = set()
    for match in NAME.finditer(text):
        name, after = match.group(), text[match.end() :].lstrip()
        if name in KEYWORDS or after.startswith("(") or re.fullmatch(r"[eE]\d+", name):  # a call, 1e6's exponent
            continue
        names.add(name)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_reader_finds_metric_names_and_nothing_else():
    expr = (
        'sum by (tier) (rate(hybrid_router_requests_total{outcome!~"a|b"}[5m])) / ignoring (x) '
        'histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval]))) * 1e6 and on (tier) '
        'label_replace(y, "tier", "$1", "from_tier", "(.*)") > 0.25'
    )
    assert metric_names(expr) == {"hybrid_router_requests_total", "x_bucket", "y"}


def test_the_dashboard_is_grafana_json_whose_panels_each_query_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"]), "panel ids are unique"
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
    titles = " ".join(p["title"] for p in panels).lower()
    for shown in ("success", "ttft", "latency", "tier mix", "spillovers", "queue", "batch", "tokens/s", "cost"):
        assert shown in titles, f"the dashboard shows no {shown}"


def test_the_alert_rules_are_prometheus_rule_groups_with_every_alert_asked_for():
    rules = alert_rules()
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), f"{rule['alert']}: for must be a duration"
        assert rule["expr"].count("(") == rule["expr"].count(")"), f"{rule['alert']}: unbalanced parentheses"
    alerts = {rule["alert"] for rule in rules}
    assert {
        "HybridSuccessBelowTarget",
        "HybridTTFTp99AboveTarget",
        "HybridDiscoveryStale",
        "HybridReplicaEjectedForLong",
        "HybridReplicaDrainingForLong",
        "HybridTierWithoutRoom",
    } <= alerts


@pytest.mark.parametrize(
    ("where", "expr"),
    [*dashboard_exprs(), *((rule["alert"], rule["expr"]) for rule in alert_rules())],
    ids=lambda value: value if len(value) < 60 else "expr",
)
def test_every_metric_named_is_one_the_code_exports(where, expr):
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - exported_names()
    assert not unknown, f"{where} names metrics nothing exports: {sorted(unknown)}"
