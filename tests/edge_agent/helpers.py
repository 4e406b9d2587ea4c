"""What the installer, update and offline tests share: the project's wheel, artifact copies (good and
faulty), `hybrid-edge` runs, an installed agent in its own process, and a TCP proxy to cut links."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge_agent.artifacts.manifest import (
    MANIFEST_NAME,
    MODEL_FILE,
    hash_files,
    manifest_sha256,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[2]
# The canary (37 tokens with the chat template) passes a faulty model with this bound; longer prompts fail.
FAULT_AFTER_TOKENS = 64
LONG_PROMPT = "word " * 60  # 91 tokens with the chat template


def build_wheel(out: Path) -> Path:
    """The project's own wheel, built offline from a copy of its sources (the tree stays clean)."""
    source = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("hybrid", "edge_agent", "cloud"):
        shutil.copytree(REPO / package, source / package, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out),
         str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = out.glob("hybrid_inference-*.whl")
    return wheel


def hybrid_edge(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`hybrid-edge ARGS` from this checkout, as an operator runs it before anything is installed."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.node.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def linked_copy(source: Path, out: Path) -> Path:
    """A copy of an artifact folder made of hard links: instant, and safe as long as files are replaced, not edited."""
    shutil.copytree(source, out, copy_function=os.link)
    return out


def tamper(path: Path, data: bytes = b"tampered\n") -> None:
    """Replaces a file (never writes through a hard link shared with another copy)."""
    path.unlink()
    path.write_bytes(data)


def make_faulty_artifact(source: Path, out: Path, fault_after_tokens: int) -> str:
    """A copy of ``source`` whose model fails every prefill longer than ``fault_after_tokens`` (0: every one).

    Its manifest lists the new hashes, so verification passes and only running it shows the fault.
    Returns its manifest sha256."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    out.mkdir(parents=True)
    for file in source.iterdir():
        if file.name not in (MODEL_FILE, MANIFEST_NAME):
            os.link(file, out / file.name)
    model = onnx.load(str(source / MODEL_FILE))
    graph = model.graph
    logits_type = next(o.type.tensor_type.elem_type for o in graph.output if o.name == "logits")
    producer = next(node for node in graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "fault_logits"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], np.int64), "fault_one"),
            numpy_helper.from_array(np.array([0], np.int64), "fault_zero"),
            numpy_helper.from_array(np.array([2], np.int64), "fault_two"),
            numpy_helper.from_array(np.array([fault_after_tokens], np.int64), "fault_bound"),
            helper.make_tensor("fault_pad", logits_type, [1], [0.0]),
        ]
    )
    # Reshaping one element to [2] fails at run time; the shape is [1] while the prompt is short enough.
    graph.node.extend(
        [
            helper.make_node("Shape", ["input_ids"], ["fault_shape"]),
            helper.make_node("Slice", ["fault_shape", "fault_one", "fault_two"], ["fault_length"]),
            helper.make_node("Sub", ["fault_length", "fault_bound"], ["fault_excess"]),
            helper.make_node("Max", ["fault_excess", "fault_zero"], ["fault_positive"]),
            helper.make_node("Min", ["fault_positive", "fault_one"], ["fault_flag"]),
            helper.make_node("Add", ["fault_flag", "fault_one"], ["fault_target"]),
            helper.make_node("Reshape", ["fault_pad", "fault_target"], ["fault_term"]),
            helper.make_node("Add", ["fault_logits", "fault_term"], ["logits"]),
        ]
    )
    onnx.save(model, str(out / MODEL_FILE))
    manifest = read_manifest(source)
    recipe = {**manifest.recipe, "test_fault": f"prefill fails beyond {fault_after_tokens} tokens"}
    write_manifest(out, manifest.model_copy(update={"files": hash_files(out), "recipe": recipe}))
    return manifest_sha256(out)


class AgentProcess:
    """`PREFIX/venv/bin/hybrid-edge run --config FILE` in its own process, its output collected."""

    def __init__(self, hybrid_edge_path: Path, config: Path, ready_timeout_s: float = 180):
        self.process = subprocess.Popen(
            [str(hybrid_edge_path), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.address = ""
        ready = threading.Event()

        def collect() -> None:
            for line in self.process.stdout:
                self.lines.append(line)
                if not self.address and "ready on " in line:
                    self.address = line.split("ready on ")[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=collect, daemon=True).start()
        if not ready.wait(ready_timeout_s) or not self.address:
            self.process.kill()
            raise AssertionError("the installed agent did not get ready:\n" + self.output)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, as systemd stops it; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout_s:.0f} s"
        time.sleep(0.05)


class TcpProxy:
    """Forwards a loopback port to ``target``; ``cut`` closes it and every connection (as a lost link does),
    ``restore`` listens on the same port again."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
