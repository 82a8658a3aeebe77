"""What an operator watches: request ids, Prometheus metrics, an access log.

One plain ASGI middleware (``Observe``) does the per-request work, so that routes stay
unaware of it:

* every response carries ``X-Request-ID`` (the caller's, when it is a short safe token,
  else a new one) and every log line written while the request runs has ``request_id``
  (``eoshare.logs.request_id``);
* requests are counted by route template, method and status, and timed in a histogram;
  bytes of asset downloads are counted by member and collection;
* one line per request in the Combined Log Format goes to the access log, when one is
  configured (``EOSHARE_API__ACCESS_LOG``: a file path, or ``-`` for standard error).

Gauges that describe the node rather than requests (items per collection, tile cache hits,
uploads and orders in progress) are read when ``/metrics`` is scraped, by a collector that
asks the services on ``app.state``: nothing is kept twice.

The registry belongs to the app (several apps in one process, as tests build them, do not
share counters). With ``serve --workers N`` the server sets ``PROMETHEUS_MULTIPROC_DIR``
to a fresh folder of that run (``eoshare.cli``) before the workers start: each worker
keeps its counters and histograms in files there (prometheus_client's multiprocess
mode), and a scrape, whichever worker answers it, adds up every worker's, including
those of workers that exited. The node gauges are read by the answering worker (the
tile cache's hits and misses are that worker's own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eoshare.logs import redact as redact_secrets
from eoshare.logs import request_id as _request_id

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"[A-Za-z0-9._\-]{1,64}")
# latency buckets for an API whose answers take from under a millisecond (cached tiles) to
# seconds (large searches, zip orders)
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The node's Prometheus figures, kept in a registry of its own. ``registry`` is what
    a scrape reads: in multiprocess mode, the sum of every worker's figures."""

    def __init__(self) -> None:
        self.own = CollectorRegistry(auto_describe=True)
        self.registry = self.own
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "eoshare_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.own,
        )
        self.latency = Histogram(
            "eoshare_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response body",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=self.own,
        )
        self.bytes_served = Counter(
            "eoshare_bytes_served",
            "Asset bytes sent by /download, by member of the caller and collection",
            ["member", "collection"],
            registry=self.own,
        )

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def totals(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The ``<name>_total`` samples of a counter as a scrape reads them (every
        worker's, added up, in multiprocess mode)."""
        return [
            (dict(sample.labels), sample.value)
            for family in self.registry.collect()
            if family.name == name
            for sample in family.samples
            if sample.name == f"{name}_total"
        ]


class NodeCollector(Collector):
    """Gauges read from the services at scrape time. ``sources`` maps a metric to a
    function returning ``[(labels, value), ...]``; a source that fails is left out of the
    scrape (the scrape itself never fails)."""

    def __init__(
        self,
        sources: dict[str, tuple[str, list[str], Callable[[], Iterable[tuple[list[str], float]]]]],
    ) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for name, (doc, labels, read) in self.sources.items():
            family = GaugeMetricFamily(name, doc, labels=labels)
            try:
                for values, value in read():
                    family.add_metric(values, value)
            except Exception:  # a broken source must not break the scrape
                logging.getLogger(__name__).warning("metric source failed", extra={"metric": name})
                continue
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


class AccessLog:
    """Combined Log Format lines (Apache/nginx ``combined``), the format log tools read."""

    def __init__(self, target: str) -> None:
        self._stream: TextIO
        if target == "-":
            self._stream = sys.stderr
            self._owned = False
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8", buffering=1)
            self._owned = True

    def write(
        self,
        *,
        client: str,
        user: str | None,
        method: str,
        target: str,
        version: str,
        status: int,
        size: int,
        referer: str,
        agent: str,
        request_id: str,
    ) -> None:
        when = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        line = (
            f"{client} - {_quote_free(user or '-')} [{when}] "
            f'"{method} {_quote_free(target)} HTTP/{version}" {status} {size} '
            f'"{_quote_free(referer or "-")}" "{_quote_free(agent or "-")}" {request_id}\n'
        )
        # a full disk or a closed stream must not fail the request; no credential in any
        # field (the query is redacted already; a Referer may carry a signed link too)
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(redact_secrets(line))

    def close(self) -> None:
        if self._owned:
            self._stream.close()


def _quote_free(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")


class Observe:
    """Request id, metrics and access log for every HTTP request (plain ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        access_log: AccessLog | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.redact = redact or _redact_query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        token = _request_id.set(rid)
        started = time.perf_counter()
        status = 500
        body_bytes = 0

        async def observed_send(message: Message) -> None:
            nonlocal status, body_bytes
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER]
                message["headers"] = [*headers, (REQUEST_ID_HEADER, rid.encode())]
            elif message["type"] == "http.response.body":
                body_bytes += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.zerocopysend":  # eoshare.api.zerocopy
                body_bytes += int(message.get("sent", 0))

        try:
            await self.app(scope, receive, observed_send)
        finally:
            _request_id.reset(token)
            self._record(scope, status, body_bytes, time.perf_counter() - started, rid)

    def _record(self, scope: Scope, status: int, size: int, seconds: float, rid: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unmatched)"
        method = scope.get("method", "GET")
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.latency.labels(template, method).observe(seconds)
        principal = _principal(scope)
        if template.startswith("/download/") and status in (200, 206) and method == "GET":
            collection = str((scope.get("path_params") or {}).get("collection_id", "?"))
            member = getattr(principal, "member", None) or "(public)"
            self.metrics.bytes_served.labels(member, collection).inc(size)
        if self.access_log is not None:
            client = scope.get("client") or ("-", 0)
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope.get("path", "") + (f"?{self.redact(query)}" if query else "")
            headers = dict(scope.get("headers") or [])
            self.access_log.write(
                client=str(client[0]),
                user=getattr(principal, "user", None),
                method=method,
                target=target,
                version=str(scope.get("http_version", "1.1")),
                status=status,
                size=size,
                referer=headers.get(b"referer", b"").decode("latin-1"),
                agent=headers.get(b"user-agent", b"").decode("latin-1"),
                request_id=rid,
            )


def _redact_query(query: str) -> str:
    return redact_secrets(query)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SAFE_ID.fullmatch(value) else None
    return None


def _principal(scope: Scope) -> Any:
    state = scope.get("state")
    if isinstance(state, dict):
        return state.get("principal")
    return getattr(state, "principal", None)
