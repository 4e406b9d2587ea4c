"""The seam between the core and its tiers: entry points, missing extras, and `hybrid up` / the bench
reaching the tiers only through their plugins."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from hybrid import tiers
from hybrid.cli import main


def test_both_tiers_are_registered_and_load_as_plugins():
    registered = {e.name: e.value for e in entry_points(group=tiers.ENTRY_POINT_GROUP)}
    assert registered == {"edge": "edge_agent.plugin:plugin", "cloud": "cloud.plugin:plugin"}
    plugins = tiers.plugins()
    assert set(plugins) == {"edge", "cloud"}
    for name, plugin in plugins.items():
        assert plugin.name == name and plugin.extra == name
        assert isinstance(plugin.available(), bool)
        for method in ("add_commands", "start_local", "start_bench"):
            assert callable(getattr(plugin, method))


def test_a_tier_that_fails_to_load_is_left_out_and_named(monkeypatch, caplog):
    registered = [
        EntryPoint("broken", "hybrid_no_such_module:plugin", tiers.ENTRY_POINT_GROUP),
        EntryPoint("edge", "edge_agent.plugin:plugin", tiers.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(tiers, "entry_points", lambda group: registered if group == tiers.ENTRY_POINT_GROUP else [])
    tiers.plugins.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="hybrid.tiers"):
            assert set(tiers.plugins()) == {"edge"}
        assert "tier broken (hybrid_no_such_module:plugin) did not load" in caplog.text
        with pytest.raises(tiers.TierNotInstalledError, match="the broken tier is not installed"):
            tiers.require("broken")
    finally:
        tiers.plugins.cache_clear()


def test_an_extra_counts_as_installed_only_when_every_module_is_found():
    assert tiers.modules_installed("json", "argparse")
    assert not tiers.modules_installed("json", "hybrid_no_such_module")


@pytest.fixture
def without(monkeypatch):
    """Makes the named tiers look as if their extras were not installed."""

    def remove(*names: str) -> None:
        for name in names:
            monkeypatch.setattr(tiers.plugins()[name], "available", lambda: False)

    return remove


def test_a_missing_tier_still_lists_its_commands(without, capsys):
    without("edge", "cloud")
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    listed = capsys.readouterr().out
    assert all(command in listed for command in ("edge", "cloud", "export", "artifacts"))


@pytest.mark.parametrize(
    ("tier", "argv"),
    [
        ("cloud", ["cloud", "serve", "--port", "0", "--device", "cpu"]),
        ("edge", ["edge", "serve", "--artifact", "/nonexistent", "--port", "0"]),
    ],
)
def test_a_command_of_a_missing_tier_says_what_to_install(tier, argv, without, capsys):
    without(tier)
    assert main(argv) == 2
    assert f"error: the {tier} tier is not installed: pip install 'hybrid-inference[{tier}]'" in capsys.readouterr().err


def test_cloud_config_needs_no_ray(without, tmp_path):
    without("cloud")
    out = tmp_path / "serve.yaml"
    assert main(["cloud", "config", "--num-gpus", "0", "--tier", "public", "--out", str(out)]) == 0
    assert "import_path: cloud.app:build_app" in out.read_text()


def test_up_without_the_cloud_extra_says_to_install_it_or_pass_no_cloud(without, tmp_path, capsys):
    without("cloud")
    assert main(["up", "--state-dir", str(tmp_path), "--once"]) == 2
    error = capsys.readouterr().err
    assert "the cloud tier is not installed: pip install 'hybrid-inference[cloud]', or pass --no-cloud" in error
    assert not list(tmp_path.iterdir()), "something started before the check"


def test_the_bench_without_the_cloud_extra_refuses_before_starting(without, tmp_path, capsys):
    without("cloud")
    assert main(["bench", "overload", "--out", str(tmp_path), "--no-plots", "--seconds", "3"]) == 2
    assert "the cloud tier is not installed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


class FakeTier:
    """A tier that records what the core asks of it and starts nothing."""

    extra = "fake"

    def __init__(self, name: str, fail_bench: bool = False):
        self.name = name
        self.fail_bench = fail_bench
        self.stacks: list[tiers.LocalStack] = []
        self.stopped = 0

    def available(self) -> bool:
        return True

    def add_commands(self, commands) -> None:
        pass

    def start_local(self, stack: tiers.LocalStack):
        self.stacks.append(stack)
        return self.stop

    def stop(self) -> None:
        self.stopped += 1

    def start_bench(self, bench: tiers.BenchHost):
        bench.on_stop(self.stop)
        bench.provisioned("edge", bench.config.edge_agents)
        self.bench = bench
        raise RuntimeError("the fake tier starts no replicas")


@pytest.fixture
def fake_tiers(monkeypatch):
    fakes = {"edge": FakeTier("edge"), "cloud": FakeTier("cloud")}
    monkeypatch.setattr(tiers, "plugins", lambda: fakes)
    return fakes


def test_up_no_cloud_starts_the_edge_tier_through_its_plugin_and_stops_it(fake_tiers, tmp_path, capsys):
    argv = ["up", "--state-dir", str(tmp_path), "--no-cloud", "--once", "--edge-port", "0", "--router-port", "0"]
    assert main([*argv, "--http-port", "0", "--region", "here"]) == 0
    (stack,) = fake_tiers["edge"].stacks
    assert stack.port == 0 and stack.region == "here" and stack.state_dir == Path(tmp_path)
    assert stack.discovery == f"static:{tmp_path / 'discovery.yaml'}"
    assert fake_tiers["edge"].stopped == 1
    assert not fake_tiers["cloud"].stacks
    assert "stack ready on 127.0.0.1:" in capsys.readouterr().out


def test_the_bench_starts_tiers_through_their_plugins_and_tears_down_what_they_left(fake_tiers, tmp_path):
    from hybrid.bench.overload_config import OverloadConfig
    from hybrid.bench.stack import BenchStack

    stack = BenchStack(OverloadConfig(out=tmp_path, cloud=False, edge_agents=2))
    with pytest.raises(RuntimeError, match="starts no replicas"):
        stack.__enter__()
    edge = fake_tiers["edge"]
    assert edge.bench is stack and stack.tier_costs["edge"].replicas == 2
    assert edge.stopped == 1, "the bench did not run the stopper the tier registered"
    assert not fake_tiers["cloud"].stopped
