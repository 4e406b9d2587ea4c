"""Consul, the production discovery backend.

Replicas register through the local agent as service ``hybrid-inference`` with a gRPC health check
(Consul speaks ``grpc.health.v1`` itself) or, when asked, a TTL check they keep alive with
``heartbeat()``. The router follows ``/v1/health/service/hybrid-inference?passing`` with blocking
queries through ``ConsulWatcher``, which keeps serving its last view while Consul is unreachable.

The client is configured as Consul's own CLI is: ``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``,
``CONSUL_HTTP_SSL``, ``CONSUL_HTTP_SSL_VERIFY`` and ``CONSUL_CACERT``; explicit arguments win.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable

import requests

from hybrid import constants
from hybrid.discovery.records import ReplicaRecord

try:
    import consul
    from consul.exceptions import ConsulException
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("Consul discovery needs py-consul: pip install 'hybrid-inference[consul]'") from err

log = logging.getLogger(__name__)

# What a failed call to the agent raises: Consul's own errors (4xx/5xx) and transport errors.
CONSUL_ERRORS = (ConsulException, requests.RequestException)

ADDRESS_HINT = "set CONSUL_HTTP_ADDR (or pass address=) to host:port or http(s)://host:port, e.g. 127.0.0.1:8500"


class ConsulConfigError(ValueError):
    """The Consul address or TLS settings cannot be used as given."""


class ConsulUnavailable(RuntimeError):
    """The Consul agent could not be reached or refused the request."""


def _env_true(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_consul_address(address: str) -> tuple[str, str, int]:
    """``host:port`` or ``scheme://host:port`` into (scheme, host, port); scheme is "" when not given."""
    url = address.strip()
    parsed = urllib.parse.urlparse(url if "//" in url else "//" + url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if (
        parsed.scheme not in ("", "http", "https")
        or not parsed.hostname
        or port is None
        or parsed.path not in ("", "/")
    ):
        raise ConsulConfigError(f"Consul address {address!r} is not usable: {ADDRESS_HINT}")
    return parsed.scheme, parsed.hostname, port


def consul_client(
    address: str | None = None,
    token: str | None = None,
    ca_file: str | None = None,
    scheme: str | None = None,
    verify: bool | None = None,
    timeout_s: float = constants.CONSUL_HTTP_TIMEOUT_S,
) -> consul.Consul:
    """A py-consul client from explicit arguments, else the usual CONSUL_* variables."""
    source = "address=" if address else "CONSUL_HTTP_ADDR"
    raw_address = address or os.environ.get("CONSUL_HTTP_ADDR") or constants.CONSUL_DEFAULT_ADDR
    try:
        address_scheme, host, port = parse_consul_address(raw_address)
    except ConsulConfigError as err:
        raise ConsulConfigError(f"{source}={raw_address!r} is not a Consul HTTP address: {ADDRESS_HINT}") from err
    if scheme is None:
        scheme = address_scheme or ("https" if _env_true("CONSUL_HTTP_SSL") else "http")

    ca_file = ca_file or os.environ.get("CONSUL_CACERT") or None
    if ca_file and not os.path.isfile(ca_file):
        raise ConsulConfigError(f"CA bundle {ca_file!r} does not exist: set CONSUL_CACERT (or ca_file=) to a PEM file")
    tls_verify: bool | str
    if ca_file:
        tls_verify = ca_file
    elif verify is not None:
        tls_verify = verify
    else:
        tls_verify = _env_true("CONSUL_HTTP_SSL_VERIFY") is not False

    client = consul.Consul(
        host=host, port=port, scheme=scheme, verify=tls_verify, token=token, connections_timeout=timeout_s
    )
    # py-consul lets CONSUL_HTTP_TOKEN override an explicit token; here the explicit one wins.
    client.token = token or os.environ.get("CONSUL_HTTP_TOKEN") or None
    return client


def _describe(client: consul.Consul) -> str:
    return client.http.base_uri


def record_from_health_entry(entry: dict) -> ReplicaRecord:
    """One entry of /v1/health/service into a record; an empty Service.Address means the node's address."""
    service = dict(entry["Service"])
    if not service.get("Address"):
        service["Address"] = (entry.get("Node") or {}).get("Address", "")
    return ReplicaRecord.from_service(service)


def service_check_id(replica_id: str) -> str:
    return f"service:{replica_id}"


class ConsulRegistry:
    """The Registry interface over the local Consul agent."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        check: str = "grpc",
        check_interval: str = constants.CONSUL_CHECK_INTERVAL,
        check_timeout: str = constants.CONSUL_CHECK_TIMEOUT,
        check_ttl: str = constants.CONSUL_CHECK_TTL,
        deregister_critical_after: str = constants.CONSUL_DEREGISTER_CRITICAL_AFTER,
        near: str | None = constants.CONSUL_WATCH_NEAR,
        client: consul.Consul | None = None,
        grpc_use_tls: bool = False,
    ):
        """``grpc_use_tls``: the replicas serve mutual TLS, so Consul's gRPC check speaks TLS and verifies their
        certificate (the agent presents its own, from its tls configuration, signed by the replicas' CA)."""
        if check not in ("grpc", "ttl"):
            raise ValueError(f"check must be 'grpc' or 'ttl', not {check!r}")
        self.client = client or consul_client(address, token=token, ca_file=ca_file)
        self.check = check
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.check_ttl = check_ttl
        self.deregister_critical_after = deregister_critical_after
        self.near = near
        self.grpc_use_tls = grpc_use_tls

    def health_check(self, record: ReplicaRecord) -> dict:
        """The check definition sent with the registration."""
        if self.check == "grpc":
            definition = consul.Check.grpc(
                f"{record.address}:{record.port}",
                self.check_interval,
                timeout=self.check_timeout,
                deregister=self.deregister_critical_after,
            )
            if self.grpc_use_tls:
                # As Consul's check definition spells them; verification stays on.
                definition["GRPCUseTLS"] = True
                definition["TLSSkipVerify"] = False
        else:
            definition = consul.Check.ttl(self.check_ttl)
            definition["DeregisterCriticalServiceAfter"] = self.deregister_critical_after
        # py-consul sends the check in a "Checks" list, for which Consul would number the id
        # ("service:<id>:1"); a fixed id keeps heartbeat() and operators' tooling simple.
        definition["CheckID"] = service_check_id(record.id)
        definition["Name"] = f"{constants.SERVICE_NAME} {self.check} health"
        # A replica registers once it serves: it enters rotation now, not after the first interval.
        definition["Status"] = "passing"
        return definition

    def _call(self, what: str, call: Callable, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except CONSUL_ERRORS as err:
            raise ConsulUnavailable(
                f"Consul {what} failed at {_describe(self.client)}: {err} ({ADDRESS_HINT}; "
                "set CONSUL_HTTP_TOKEN if the agent enforces ACLs)"
            ) from err

    def register(self, record: ReplicaRecord) -> None:
        service = record.to_service()
        self._call(
            "register",
            self.client.agent.service.register,
            service["Name"],
            service_id=service["ID"],
            address=service["Address"],
            port=service["Port"],
            tags=service["Tags"],
            meta=service["Meta"],
            check=self.health_check(record),
        )

    def deregister(self, replica_id: str) -> None:
        # An unknown id answers 404, which py-consul reports as False: deregistering is idempotent.
        self._call("deregister", self.client.agent.service.deregister, replica_id)

    def is_registered(self, record: ReplicaRecord) -> bool:
        # The local agent's own services, not the health query: a replica whose check is critical is
        # still registered, and registering it again would reset the check Consul is running.
        services = self._call("service lookup", self.client.agent.services) or {}
        entry = services.get(record.id)
        return entry is not None and ReplicaRecord.from_service(entry) == record

    def heartbeat(self, replica_id: str) -> None:
        """Keeps a TTL check passing; call it more often than check_ttl."""
        self._call("heartbeat", self.client.agent.check.ttl_pass, service_check_id(replica_id))

    def list(self) -> list[ReplicaRecord]:
        _, entries = self._call(
            "health query", self.client.health.service, constants.SERVICE_NAME, passing=True, near=self.near
        )
        return [record_from_health_entry(entry) for entry in entries or []]


class ConsulWatcher:
    """The router's view of passing replicas, kept current by blocking queries.

    ``replicas`` is always the last successful answer: an outage leaves it as it was, and
    ``healthy``/``last_error``/``staleness_s()`` say how much to trust it.
    """

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        on_change: Callable[[list[ReplicaRecord]], None] | None = None,
        wait: str = constants.CONSUL_WATCH_WAIT,
        near: str | None = constants.CONSUL_WATCH_NEAR,
        backoff_min_s: float = constants.CONSUL_BACKOFF_MIN_S,
        backoff_max_s: float = constants.CONSUL_BACKOFF_MAX_S,
        service: str = constants.SERVICE_NAME,
        client: consul.Consul | None = None,
    ):
        self.client = client or consul_client(address, token=token, ca_file=ca_file)
        self.on_change = on_change
        self.wait = wait
        self.near = near
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.service = service
        self.healthy = False
        self.last_error = ""
        self.consecutive_failures = 0
        self._index = 0
        self._replicas: list[ReplicaRecord] = []
        self._last_success: float | None = None
        self._outage_started: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def replicas(self) -> list[ReplicaRecord]:
        with self._lock:
            return list(self._replicas)

    def staleness_s(self) -> float:
        """Seconds since the last successful query; infinite before the first one."""
        if self._last_success is None:
            return float("inf")
        return time.monotonic() - self._last_success

    def poll_once(self) -> bool:
        """One (blocking, once an index is known) query. True when it succeeded."""
        try:
            index, entries = self.client.health.service(
                self.service,
                index=str(self._index) if self._index > 0 else None,
                wait=self.wait,
                passing=True,
                near=self.near,
            )
            records = [record_from_health_entry(entry) for entry in entries or []]
            new_index = int(index)
        except (*CONSUL_ERRORS, ValueError, KeyError) as err:
            self._record_failure(err)
            return False
        self._record_success(new_index, records)
        return True

    def _record_success(self, new_index: int, records: list[ReplicaRecord]) -> None:
        # Consul's blocking-query rules: an index that goes backwards (agent restarted, snapshot
        # restored) means start over with a plain query; an index below 1 must never be sent back.
        if new_index < self._index:
            log.info("Consul index went backwards (%d -> %d); resetting the watch", self._index, new_index)
            self._index = 0
        else:
            self._index = max(new_index, 1)
        if not self.healthy and self._outage_started is not None:
            log.warning(
                "Consul reachable again at %s after %.1f s",
                _describe(self.client),
                time.monotonic() - self._outage_started,
            )
        self.healthy = True
        self.last_error = ""
        self.consecutive_failures = 0
        self._outage_started = None
        self._last_success = time.monotonic()
        with self._lock:
            changed = _key(records) != _key(self._replicas)
            if changed:
                self._replicas = records
        if changed and self.on_change is not None:
            try:
                self.on_change(list(records))
            except Exception:
                log.exception("on_change callback failed; the watcher keeps going")

    def _record_failure(self, err: BaseException) -> None:
        self.last_error = f"{type(err).__name__}: {err}"
        self.consecutive_failures += 1
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            log.warning(
                "Consul unreachable at %s (%s); serving the last known view of %d replicas until it returns",
                _describe(self.client),
                self.last_error,
                len(self._replicas),
            )
        self.healthy = False

    def backoff_s(self) -> float:
        """Full-jitter exponential backoff after the current run of failures."""
        ceiling = min(self.backoff_max_s, self.backoff_min_s * 2 ** max(self.consecutive_failures - 1, 0))
        return random.uniform(self.backoff_min_s, max(ceiling, self.backoff_min_s))

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            if not self.poll_once():
                self._stopping.wait(self.backoff_s())
                continue
            # Consul asks clients to rate-limit blocking loops: an agent that answers at once
            # (churning index, a proxy that drops the wait) must not turn this into a busy loop.
            self._stopping.wait(max(0.0, constants.CONSUL_WATCH_MIN_INTERVAL_S - (time.monotonic() - started)))

    def start(self) -> ConsulWatcher:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="consul-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stops watching. A query in flight ends at its wait at the latest; the thread is a daemon."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def _key(records: list[ReplicaRecord]) -> list[tuple]:
    return sorted((r.id, tuple(sorted(r.model_dump().items()))) for r in records)
