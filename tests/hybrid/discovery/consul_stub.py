"""An in-process HTTP stub of the few Consul agent endpoints Hybrid uses.

Faithful to Consul's documented behaviour where Hybrid depends on it: case-insensitive JSON keys in
registrations (Consul translates snake_case too), ``Check`` or ``Checks``, checks that start
critical unless ``Status`` says otherwise, blocking queries on ``index``/``wait`` (Go durations),
``passing`` filtering, ``X-Consul-Index`` on every health answer, 404 for an unknown service ID.
Not simulated: TTL expiry, ACL enforcement, ``near`` sorting, the jitter Consul adds to ``wait``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
MAX_WAIT_S = 600.0  # Consul caps wait at 10 minutes.


def parse_go_duration(text: str) -> float:
    if text in ("0", ""):
        return 0.0
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def _normalized(body: dict) -> dict:
    """Keys lowered and without underscores, as Consul's decoder matches them."""
    return {k.replace("_", "").lower(): v for k, v in body.items()}


class ConsulStub:
    def __init__(self, node: str = "stub-node", node_address: str = "127.0.0.1"):
        self.node = node
        self.node_address = node_address
        self.services: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.registrations: list[dict] = []  # request bodies, as sent
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query)
        self.tokens: list[str | None] = []  # X-Consul-Token of each request
        self.blocking_queries = 0
        self.index = 1
        self.port = 0
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ConsulStub:
        stub = self

        class Handler(ConsulHandler):
            consul = stub

        self._stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Goes away like a dead agent: the port refuses and blocking queries in flight are dropped."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restart(self, index: int | None = None) -> ConsulStub:
        """Comes back on the same port with the same state; ``index`` sets the raft index (may go backwards)."""
        if index is not None:
            self.index = index
        return self.start()

    # --- hooks -----------------------------------------------------------------------------
    def set_check_status(self, service_id: str, status: str) -> None:
        assert status in ("passing", "warning", "critical"), status
        with self._changed:
            for check in self.checks.values():
                if check["ServiceID"] == service_id:
                    check["Status"] = status
            self._bump()

    def blocking_queries_with_index(self) -> list[dict[str, str]]:
        return [q for m, p, q in self.requests if m == "GET" and p.startswith("/v1/health/service/") and "index" in q]

    def _bump(self) -> None:
        self.index += 1
        self._changed.notify_all()

    # --- endpoints -------------------------------------------------------------------------
    def register(self, body: dict) -> tuple[int, str]:
        fields = _normalized(body)
        name = fields.get("name")
        if not name:
            return 400, "Missing service name"
        service_id = fields.get("id") or name
        service = {
            "ID": service_id,
            "Service": name,
            "Tags": fields.get("tags") or [],
            "Address": fields.get("address") or "",
            "Meta": fields.get("meta") or {},
            "Port": int(fields.get("port") or 0),
            "Weights": fields.get("weights") or {"Passing": 1, "Warning": 1},
            "EnableTagOverride": bool(fields.get("enabletagoverride", False)),
        }
        definitions = []
        if fields.get("check"):
            definitions.append((fields["check"], f"service:{service_id}"))
        for number, check in enumerate(fields.get("checks") or [], start=1):
            definitions.append((check, f"service:{service_id}:{number}"))
        checks = {}
        for raw, default_id in definitions:
            check = _normalized(raw)
            kinds = [k for k in ("grpc", "http", "tcp", "ttl", "script", "args") if check.get(k)]
            if not kinds:
                return 400, "Invalid check: must be a script, HTTP, TCP, gRPC or TTL check"
            if kinds[0] != "ttl" and not check.get("interval"):
                return 400, "Invalid check: Interval must be > 0 for this check type"
            check_id = check.get("checkid") or check.get("id") or default_id
            checks[check_id] = {
                "CheckID": check_id,
                "Name": check.get("name") or f"Service '{name}' check",
                "Status": check.get("status") or "critical",
                "ServiceID": service_id,
                "ServiceName": name,
                "Type": kinds[0],
                "Definition": raw,
            }
        with self._changed:
            self.registrations.append(body)
            self.checks = {k: v for k, v in self.checks.items() if v["ServiceID"] != service_id}
            self.checks.update(checks)
            self.services[service_id] = service
            self._bump()
        return 200, ""

    def deregister(self, service_id: str) -> tuple[int, str]:
        with self._changed:
            if service_id not in self.services:
                return (
                    404,
                    f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.',
                )
            del self.services[service_id]
            self.checks = {k: v for k, v in self.checks.items() if v["ServiceID"] != service_id}
            self._bump()
        return 200, ""

    def pass_check(self, check_id: str) -> tuple[int, str]:
        with self._changed:
            if check_id not in self.checks:
                return 404, f'Unknown check ID "{check_id}"'
            self.checks[check_id]["Status"] = "passing"
            self._bump()
        return 200, ""

    def agent_services(self) -> dict[str, dict]:
        """/v1/agent/services: the agent's own services by ID, whatever their checks say."""
        with self._changed:
            return {service_id: dict(service) for service_id, service in self.services.items()}

    def health(self, name: str, query: dict[str, str]) -> tuple[int, str | list, int]:
        wait_s = 300.0
        if "wait" in query:
            try:
                wait_s = min(parse_go_duration(query["wait"]), MAX_WAIT_S)
            except ValueError:
                return 400, "Invalid wait time", self.index
        with self._changed:
            if "index" in query:
                try:
                    wanted = int(query["index"])
                except ValueError:
                    return 400, "Invalid index", self.index
                self.blocking_queries += 1
                deadline = time.monotonic() + wait_s
                while self.index <= wanted and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                if self._stopping:
                    return -1, "", self.index
            entries = [self._entry(s) for s in self.services.values() if s["Service"] == name]
            if "passing" in query and query["passing"].lower() not in ("0", "false"):
                entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
            return 200, entries, self.index

    def _entry(self, service: dict) -> dict:
        node_check = {
            "Node": self.node,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "ServiceID": "",
            "ServiceName": "",
            "Type": "",
        }
        service_checks = [
            {k: v for k, v in c.items() if k != "Definition"} | {"Node": self.node}
            for c in self.checks.values()
            if c["ServiceID"] == service["ID"]
        ]
        return {
            "Node": {
                "ID": "00000000-0000-0000-0000-000000000001",
                "Node": self.node,
                "Address": self.node_address,
                "Datacenter": "dc1",
                "TaggedAddresses": {},
                "Meta": {},
            },
            "Service": dict(service),
            "Checks": [node_check, *service_checks],
        }


class ConsulHandler(BaseHTTPRequestHandler):
    consul: ConsulStub

    def log_message(self, format, *args):  # keeps test output quiet
        pass

    def _reply(self, code: int, body, index: int | None = None) -> None:
        if code < 0:  # the agent died mid-query: drop the connection without an answer
            self.close_connection = True
            return
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        if index is not None:
            self.send_header("X-Consul-Index", str(index))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _parse(self) -> tuple[str, dict[str, str]]:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        self.consul.requests.append((self.command, url.path, query))
        self.consul.tokens.append(self.headers.get("X-Consul-Token"))
        return url.path, query

    def do_PUT(self):
        path, _ = self._parse()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path == "/v1/agent/service/register":
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as err:
                return self._reply(400, f"Request decode failed: {err}")
            return self._reply(*self.consul.register(body))
        if path.startswith("/v1/agent/service/deregister/"):
            return self._reply(*self.consul.deregister(urllib.parse.unquote(path.rsplit("/", 1)[1])))
        if path.startswith("/v1/agent/check/pass/"):
            return self._reply(*self.consul.pass_check(urllib.parse.unquote(path.split("/v1/agent/check/pass/", 1)[1])))
        self._reply(404, "")

    def do_GET(self):
        path, query = self._parse()
        if path == "/v1/agent/services":
            return self._reply(200, self.consul.agent_services())
        if path.startswith("/v1/health/service/"):
            code, body, index = self.consul.health(urllib.parse.unquote(path.rsplit("/", 1)[1]), query)
            return self._reply(code, body, index)
        self._reply(404, "")
