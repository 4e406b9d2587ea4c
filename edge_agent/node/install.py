"""`hybrid-edge install`: sets up an edge node on Linux, idempotently.

In this order, so that a refused artifact leaves nothing behind:

1. fetch the artifact into PREFIX/artifacts/<sha> and verify every file against the manifest, and
   the manifest against the pinned --sha256 and, with --trust, its signature against that key
   (edge_agent.artifacts.store); the key is kept as CONFIG_DIR/artifact-signing.pub, which the
   agent checks every artifact against before it loads it;
2. create PREFIX/venv and pip-install hybrid-inference with the `edge` extra (and `consul` when
   discovery is Consul) from --wheel, --package or the index; skipped when the installer runs
   from that venv already (cloud-init installs the package first, then runs this);
3. point PREFIX/artifacts/current at the artifact;
4. write CONFIG_DIR/agent.yaml and CONFIG_DIR/agent.env (the agent's TLS files);
5. install the systemd unit (edge_agent.node.service: its own unprivileged user, hardened) and
   (re)start it, then wait until the agent serves, and say whether it registered; where systemd
   is absent (or --no-systemd) print the command that runs the agent.

The agent binds loopback unless it has TLS files (then every interface); plain gRPC beyond
loopback needs --plaintext. Its metrics stay on loopback.

A failure in steps 1-4 undoes what this run did (a fresh prefix is removed whole). Every step that
finds its work done says "unchanged": a second run with the same flags changes nothing. A node
that serves another artifact is never switched by install, which has no health gate: it says to
run `hybrid-edge update`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent import defaults
from edge_agent.artifacts.signing import TrustedKey
from edge_agent.artifacts.store import ArtifactStore, Progress, check_sha256
from edge_agent.node.config import (
    EdgeNodeError,
    NodeConfig,
    NodeLayout,
    render_node_config,
    running_agent,
    write_atomically,
)
from edge_agent.node.service import (
    AgentTls,
    ensure_service_user,
    hand_state_to,
    render_environment,
    render_unit,
)
from edge_agent.node.status import probe_agent

DISTRIBUTION = "hybrid-inference"
SERVICE_NAME = defaults.EDGE_SYSTEMD_UNIT.stem
# Modules each extra brings, to tell whether a venv has them.
# onnxruntime-gpu (edge-gpu) brings the same onnxruntime module as onnxruntime does, and replaces it.
EXTRA_MODULES = {
    "edge": ("onnxruntime", "transformers", "jinja2"),
    "edge-gpu": ("onnxruntime", "transformers", "jinja2"),
    "consul": ("consul",),
}
REUSE_PTH_NAME = "hybrid-edge-reuse-site-packages.pth"


@dataclass
class PackageSource:
    """Where the package comes from. reuse_site_packages is for air-gapped nodes and tests: the new venv
    sees the site-packages of the Python that runs the installer, so pip resolves every dependency there."""

    wheel: Path | None = None
    package: str | None = None
    index_url: str | None = None
    find_links: list[str] = field(default_factory=list)
    reuse_site_packages: bool = False
    python: str = sys.executable


@dataclass
class InstallRequest:
    artifact: str
    sha256: str
    node: NodeConfig
    config_path: Path
    package: PackageSource = field(default_factory=PackageSource)
    systemd: bool | None = None  # None: use it where it runs
    start: bool = True
    trust: Path | None = None  # the public key every artifact must be signed by
    tls: AgentTls | None = None
    plaintext: bool = False
    service_user: str = defaults.EDGE_SERVICE_USER


@dataclass
class Step:
    name: str
    outcome: str  # installed, updated, unchanged, skipped
    detail: str

    @property
    def changed(self) -> bool:
        return self.outcome in ("installed", "updated", "restarted", "started")


@dataclass
class InstallReport:
    steps: list[Step]
    run_command: list[str]
    systemd: bool

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)


class _Undo:
    """What to take back, newest first, when a later step fails."""

    def __init__(self):
        self._actions: list[Callable[[], None]] = []

    def add(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def run(self) -> None:
        for action in reversed(self._actions):
            try:
                action()
            except OSError:
                pass


def systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 when this folder exists."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def extras_for(node: NodeConfig) -> list[str]:
    runtime = "edge-gpu" if node.device == "cuda" else "edge"
    return [runtime, "consul"] if node.discovery.startswith("consul") else [runtime]


def run_command(layout: NodeLayout, config_path: Path) -> list[str]:
    return [str(layout.hybrid_edge), "run", "--config", str(config_path)]


def _check_writable(path: Path, flag: str) -> None:
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise EdgeNodeError(f"cannot write {path}: run as root (sudo), or choose a folder you can write with {flag}")


# --- the package ------------------------------------------------------------------------------


def _package_spec(source: PackageSource, extras: list[str]) -> tuple[str, str]:
    """(what pip installs, what identifies it for a re-run)."""
    joined = ",".join(extras)
    if source.wheel is not None:
        wheel = Path(source.wheel).resolve()
        if not wheel.is_file():
            raise EdgeNodeError(f"--wheel {source.wheel} does not exist: build it with `pip wheel --no-deps .`")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        return f"{wheel}[{joined}]", f"wheel sha256:{digest}"
    if source.package:
        return source.package, f"package {source.package}"
    version = importlib.metadata.version(DISTRIBUTION)
    spec = f"{DISTRIBUTION}[{joined}]=={version}"
    return spec, f"package {spec}"


def _running_inside(venv: Path) -> bool:
    return venv.exists() and Path(sys.prefix).resolve() == venv.resolve()


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise EdgeNodeError(f"{what} failed (exit {result.returncode}): {shlex.join(command)}\n{tail}")
    return result.stdout


def _reuse_site_packages(venv_python: Path, host_python: str) -> None:
    # Only the folders, not a site.addsitedir: the host's own .pth files (an editable install of this
    # package, say) must not shadow what pip installs into the venv.
    probe = "import site, sys; print(sys.version_info[:2]); print('\\n'.join(site.getsitepackages()))"
    venv_version = _run([str(venv_python), "-c", "import sys; print(sys.version_info[:2])"], "asking the venv")
    host_version, *folders = _run([host_python, "-c", probe], f"asking {host_python}").splitlines()
    if venv_version.strip() != host_version.strip():
        raise EdgeNodeError(
            f"--reuse-site-packages needs the venv's Python ({venv_version.strip()}) to be the version of "
            f"{host_python} ({host_version.strip()}): create the venv with --python {host_python}"
        )
    purelib = _run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], "asking the venv"
    )
    write_atomically(Path(purelib.strip()) / REUSE_PTH_NAME, "".join(f"{folder}\n" for folder in folders))


def ensure_package(
    layout: NodeLayout, source: PackageSource, extras: list[str], say: Callable[[str], None], undo: _Undo
) -> Step:
    spec, identity = _package_spec(source, extras)
    venv_python = layout.venv / "bin" / "python"
    if _running_inside(layout.venv) and source.wheel is None and source.package is None:
        missing = [m for extra in extras for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
        if not missing:
            version = importlib.metadata.version(DISTRIBUTION)
            return Step("package", "unchanged", f"{DISTRIBUTION} {version} in {layout.venv} (running from it)")
    else:
        try:
            recorded = json.loads(layout.install_record.read_text())
        except (OSError, ValueError):
            recorded = {}
        if venv_python.exists() and layout.hybrid_edge.exists() and recorded.get("package") == identity:
            return Step("package", "unchanged", f"{recorded.get('spec', spec)} in {layout.venv}")

    created = not venv_python.exists()
    if created:
        say(f"creating the virtual environment {layout.venv}")
        undo.add(lambda: shutil.rmtree(layout.venv, ignore_errors=True))
        _run([source.python, "-m", "venv", str(layout.venv)], f"creating {layout.venv}")
    if source.reuse_site_packages:
        _reuse_site_packages(venv_python, source.python)
    pip = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if source.index_url:
        pip += ["--index-url", source.index_url]
    elif source.reuse_site_packages or source.find_links:
        pip.append("--no-index")  # air-gapped: everything comes from here
    for links in source.find_links:
        pip += ["--find-links", links]
    say(f"installing {spec} into {layout.venv} (pip)")
    if source.wheel is not None and not created:
        # A rebuilt wheel may keep its version number; pip would call it installed already.
        _run([*pip, "--force-reinstall", "--no-deps", str(Path(source.wheel).resolve())], "pip install")
    _run([*pip, spec], "pip install")
    write_atomically(
        layout.install_record,
        json.dumps({"package": identity, "spec": spec, "extras": extras, "installed_at": time.time()}, indent=2) + "\n",
    )
    return Step("package", "installed" if created else "updated", f"{spec} into {layout.venv}")


# --- the service ------------------------------------------------------------------------------


def _wait_until_serving(layout: NodeLayout, node: NodeConfig, sha256: str) -> str:
    deadline = time.monotonic() + defaults.EDGE_AGENT_WAIT_S
    while time.monotonic() < deadline:
        runtime = running_agent(layout)
        if runtime is not None and runtime.serving_sha256 == sha256:
            live = probe_agent(node.local_address(runtime.address), node.tls)
            if live["health"] == "SERVING":
                discovery = runtime.discovery
                listed = (
                    "registered in " + discovery["spec"]
                    if discovery.get("registered")
                    else f"not registered yet ({discovery.get('last_error') or 'discovery none'}); it retries by itself"
                )
                return f"serving on {runtime.address}; {listed}"
        time.sleep(1.0)
    raise EdgeNodeError(
        f"the agent did not serve within {defaults.EDGE_AGENT_WAIT_S:.0f} s: see `journalctl -u {SERVICE_NAME}`"
    )


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True)


def service_step(request: InstallRequest, layout: NodeLayout, changed: bool, say: Callable[[str], None]) -> Step:
    node, config_path = request.node, request.config_path
    command = shlex.join(run_command(layout, config_path))
    use_systemd = systemd_running() if request.systemd is None else request.systemd
    if not use_systemd:
        why = "--no-systemd" if request.systemd is False else "systemd is not running here"
        agent = running_agent(layout)
        note = "; restart the running agent to apply the changes" if changed and agent else ""
        return Step("service", "skipped", f"{why}: run the agent with  {command}{note}")
    if os.geteuid() != 0:
        raise EdgeNodeError("installing a systemd unit needs root: run with sudo, or pass --no-systemd")
    ensure_service_user(request.service_user)
    hand_state_to(request.service_user, layout)
    unit_path = defaults.EDGE_SYSTEMD_UNIT
    unit = render_unit(layout, config_path, node, request.service_user)
    unit_changed = not unit_path.is_file() or unit_path.read_text() != unit
    if unit_changed:
        write_atomically(unit_path, unit)
        _run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
    _run(["systemctl", "enable", SERVICE_NAME], f"systemctl enable {SERVICE_NAME}")
    if not request.start:
        return Step("service", "installed" if unit_changed else "unchanged", f"{unit_path}, enabled, not started")
    active = _systemctl("is-active", "--quiet", SERVICE_NAME).returncode == 0
    if active and not (changed or unit_changed):
        return Step("service", "unchanged", f"{SERVICE_NAME} running ({unit_path})")
    say(f"{'restarting' if active else 'starting'} {SERVICE_NAME}")
    _run(["systemctl", "restart" if active else "start", SERVICE_NAME], f"systemctl start {SERVICE_NAME}")
    serving = _wait_until_serving(layout, node, check_sha256(request.sha256))
    return Step("service", "restarted" if active else "started", f"{SERVICE_NAME}: {serving}")


# --- the whole install ------------------------------------------------------------------------


def install_node(
    request: InstallRequest, progress: Progress | None = None, say: Callable[[str], None] = lambda message: None
) -> InstallReport:
    sha256 = check_sha256(request.sha256)
    if not sys.platform.startswith("linux"):
        raise EdgeNodeError("hybrid-edge install sets up Linux nodes; elsewhere run `hybrid edge serve`")
    node, config_path = request.node, Path(request.config_path)
    trusted = _trusted_key(request, config_path)
    if trusted is not None:
        node = request.node = node.model_copy(update={"trust_key": config_path.parent / defaults.EDGE_TRUST_KEY_NAME})
    layout = node.layout
    _check_writable(layout.prefix, "--prefix")
    _check_writable(config_path.parent, "--config-dir")
    fresh = [path for path in (layout.prefix, config_path.parent) if not path.exists()]
    undo = _Undo()
    steps: list[Step] = []
    files_in_place = False
    try:
        with layout.update_lock():
            store = ArtifactStore(layout.artifacts, trusted)
            links = store.links()
            if links.current not in (None, sha256) and store.verified(links.current) is not None:
                update = ["hybrid-edge", "update", "--config", str(config_path), "--artifact", request.artifact]
                raise EdgeNodeError(
                    f"this node serves artifact {links.current[:12]} already; install never replaces a serving "
                    f"artifact (it has no health gate): run  {shlex.join([*update, '--sha256', sha256])}"
                )
            say(f"fetching artifact {sha256[:12]} from {request.artifact}")
            manifest, fetched = store.add(request.artifact, sha256, progress)
            if fetched:
                undo.add(lambda: shutil.rmtree(store.path(sha256), ignore_errors=True))
            steps.append(
                Step(
                    "artifact",
                    "installed" if fetched else "unchanged",
                    f"{sha256[:12]} {manifest.model} {manifest.precision}, verified, in {store.path(sha256)}",
                )
            )
            steps.append(ensure_package(layout, request.package, extras_for(node), say, undo))
            if links.current != sha256:
                with store.locked():
                    before = store.flip(sha256)
                undo.add(lambda: store.set_links(before))
            if trusted is not None:
                key_text = trusted.path.read_text()
                steps.append(_write_config(node.trust_key, key_text, undo, "trust"))
            environment = render_environment(request.tls, request.plaintext)
            steps.append(_write_config(config_path.parent / defaults.EDGE_ENV_NAME, environment, undo, "tls"))
            steps.append(_write_config(config_path, render_node_config(node), undo))
            files_in_place = True
            # A service that fails to start is reported, not undone: the files are the node's, the log says why.
            steps.append(service_step(request, layout, any(step.changed for step in steps), say))
    except BaseException:
        if not files_in_place:
            undo.run()
            for path in fresh:
                shutil.rmtree(path, ignore_errors=True)
        raise
    return InstallReport(steps, run_command(layout, config_path), steps[-1].outcome != "skipped")


def _trusted_key(request: InstallRequest, config_path: Path) -> TrustedKey | None:
    """The key of --trust. A node that trusts a key keeps trusting it: running install again without --trust
    would silently drop the signature check, so that is refused."""
    if request.trust is not None:
        return TrustedKey.load(request.trust)
    kept = config_path.parent / defaults.EDGE_TRUST_KEY_NAME
    if config_path.is_file() and kept.is_file() and f"trust_key: {kept}" in config_path.read_text():
        raise EdgeNodeError(
            f"this node accepts only artifacts signed by the key in {kept}: pass --trust {kept} (or the key's .pub) "
            "again; to stop checking signatures, remove trust_key from agent.yaml and that file first"
        )
    return None


def _write_config(path: Path, text: str, undo: _Undo, step: str = "config") -> Step:
    old = path.read_text() if path.is_file() else None
    if old == text:
        return Step(step, "unchanged", str(path))
    write_atomically(path, text)
    undo.add((lambda: write_atomically(path, old)) if old is not None else (lambda: path.unlink(missing_ok=True)))
    return Step(step, "installed" if old is None else "updated", str(path))
