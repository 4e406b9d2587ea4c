"""`hybrid router serve`'s request log and tracing flags reach the router's config, and bad values are refused."""

from __future__ import annotations

import pytest

from hybrid.cli import build_parser
from hybrid.router import server


def served_config(monkeypatch, *flags: str) -> server.RouterConfig:
    seen = []
    monkeypatch.setattr(server, "serve_forever", lambda config: seen.append(config))
    monkeypatch.setattr(server, "run_event_loop", lambda main: None)
    args = build_parser().parse_args(["router", "serve", "--discovery", "static:/tmp/discovery.yaml", *flags])
    assert args.func(args) == 0
    [config] = seen
    return config


def test_the_request_log_and_tracing_are_off_unless_asked_for(monkeypatch):
    config = served_config(monkeypatch)
    assert config.request_log is None and config.tracing.otlp_endpoint is None


def test_the_flags_reach_the_routers_config(monkeypatch):
    config = served_config(
        monkeypatch,
        "--request-log",
        "-",
        "--request-log-sample",
        "0.25",
        "--otlp-endpoint",
        "http://collector:4317",
        "--trace-sample",
        "0.1",
    )
    assert (config.request_log, config.request_log_sample) == ("-", 0.25)
    assert (config.tracing.otlp_endpoint, config.tracing.sample_ratio) == ("http://collector:4317", 0.1)


@pytest.mark.parametrize("flag", ["--request-log-sample", "--trace-sample"])
def test_a_share_outside_0_to_1_is_refused_when_the_flags_are_read(capsys, flag):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["router", "serve", "--discovery", "static:/tmp/d.yaml", flag, "1.5"])
    assert f"{flag}: 1.5 must be between 0 and 1" in capsys.readouterr().err
