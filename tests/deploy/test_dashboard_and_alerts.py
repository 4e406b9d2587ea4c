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
from prometheus_client.metrics import MetricWrapperBase

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


# Labels Prometheus adds to every scraped series, and the bucket label of histograms.
SCRAPE_LABELS = {"instance", "job"}


def exported_labels() -> dict[str, set[str]]:
    """Every sample name the router's and a replica's metrics can export, with the labels it carries, read from
    their definitions (a labelled family exports nothing until a label set is used, so a scrape would miss
    some)."""
    labels = {}
    for metrics in (RouterMetrics(CollectorRegistry()), ReplicaMetrics(CollectorRegistry())):
        for metric in vars(metrics).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            family = next(iter(metric.collect()))
            for suffix in SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                labels[family.name + suffix] = set(metric._labelnames) | extra | SCRAPE_LABELS
    return labels


def exported_names() -> set[str]:
    return set(exported_labels())


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


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """Each ``metric{label=...}`` selector of the expression: the metric and the labels it matches on."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    return [
        (name, set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers)))
        for name, matchers in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", text)
    ]


def grouping_labels(expr: str) -> set[str]:
    """The labels the expression groups or matches by (``by``, ``without``, ``on``, ``ignoring``)."""
    lists = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
    return {label.strip() for names in lists for label in names.split(",") if label.strip()}


def made_labels(expr: str) -> set[str]:
    """Labels the expression makes itself (label_replace's destination)."""
    return set(re.findall(r'label_replace\([^,]+,\s*"(\w+)"', expr))


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_reader_finds_metric_names_and_nothing_else():
    expr = (
        'sum by (tier) (rate(hybrid_router_requests_total{outcome!~"a|b"}[5m])) / ignoring (x) '
        "histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval]))) * 1e6 and on (tier) "
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


@pytest.mark.parametrize(
    ("where", "expr"),
    [*dashboard_exprs(), *((rule["alert"], rule["expr"]) for rule in alert_rules())],
    ids=lambda value: value if len(value) < 60 else "expr",
)
def test_every_label_used_is_one_the_metrics_carry(where, expr):
    labels = exported_labels()
    for name, matched in selector_labels(expr):
        assert matched <= labels[name], f"{where}: {name} has no label {sorted(matched - labels[name])}"
    carried = set().union(*(labels[name] for name in metric_names(expr))) | made_labels(expr)
    assert grouping_labels(expr) <= carried, f"{where}: no metric carries {sorted(grouping_labels(expr) - carried)}"


def test_the_label_reader_sees_matchers_groupings_and_made_labels():
    expr = 'sum by (tier, le) (rate(x_bucket{outcome!~"a|b", tier="edge"}[5m])) and on (tier) label_replace(y, "t", "$1", "f", "(.*)")'
    assert selector_labels(expr) == [("x_bucket", {"outcome", "tier"})]
    assert grouping_labels(expr) == {"tier", "le"}
    assert made_labels(expr) == {"t"}
