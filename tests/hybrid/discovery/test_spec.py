"""The discovery spec: one parser for every command line and config that names discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.discovery import DiscoverySpec, StaticFileRegistry, parse_discovery_spec, registry_from_spec


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("static:/tmp/d.yaml", DiscoverySpec("static", path=Path("/tmp/d.yaml"))),
        ("static:relative/d.yaml", DiscoverySpec("static", path=Path("relative/d.yaml"))),
        ("consul", DiscoverySpec("consul")),
        ("consul:10.0.0.5:8500", DiscoverySpec("consul", address="10.0.0.5:8500")),
        ("consul:https://consul.internal:8501", DiscoverySpec("consul", address="https://consul.internal:8501")),
        ("none", DiscoverySpec("none")),
    ],
)
def test_every_accepted_form_parses_and_reads_back(text, spec):
    assert parse_discovery_spec(text) == spec
    assert str(spec) == text


@pytest.mark.parametrize("text", ["", "static:", "consul:", "etcd:somewhere", "none:x", "Consul", "static"])
def test_anything_else_is_refused_naming_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"use 'static:FILE', 'consul' .*'consul:HOST:PORT' or 'none'"):
        parse_discovery_spec(text)


def test_the_registry_follows_the_parsed_spec(tmp_path):
    registry = registry_from_spec(f"static:{tmp_path / 'd.yaml'}")
    assert isinstance(registry, StaticFileRegistry) and registry.path == tmp_path / "d.yaml"
    assert registry_from_spec("none") is None
    with pytest.raises(ValueError, match="'static:FILE'"):
        registry_from_spec("static:")

