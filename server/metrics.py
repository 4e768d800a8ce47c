"""Prometheus metrics: one registry per application, served on a port of its own.

The rule this module keeps: no label value ever comes from a member. Labels
are the route *template* (``/v1/groups/{group_id}/messages``, never the
path), the HTTP method (one of a fixed set), the status code, a background
task's name and a mail outcome; everything else is a bare number. So the
metrics name no member, group, token or address, and a flood of junk paths
cannot grow them.

Two kinds of instrument: counted as it happens (requests, their latency,
messages committed, batch sizes, notify lag), and read when scraped from the
object that already knows (open sockets, the pool, task crashes, mail
outcomes). ``serve_metrics`` serves ``GET /metrics`` from a runner of its
own, so the API's reverse proxy never reaches it (server/settings.py: off
unless ``--metrics-port`` is given, on loopback unless told otherwise).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from server.store.db import PoolUsage

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SWITCHING_PROTOCOLS = 101  # a WebSocket: its "latency" is the socket's life
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 256)  # up to services/messages.py MAX_BATCH
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One application's instruments, on a registry of its own (tests run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.address: tuple[str, int] | None = None  # where serve_metrics bound
        self._requests = Counter(
            "spokes_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "spokes_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method (WebSockets excluded)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._committed = Counter(
            "spokes_messages_committed",
            "Messages this instance appended to group logs",
            registry=self.registry,
        )
        self._batch = Histogram(
            "spokes_message_batch_size",
            "Messages appended per committed transaction of the message writer",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._notify_lag = Histogram(
            "spokes_notify_lag_seconds",
            "From an event's commit (its created_at) until this instance's hub read it "
            "after a NOTIFY (events committed here reach the sockets without a read)",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self._sampled = _Sampled()
        self.registry.register(self._sampled)

    # --- counted as it happens ------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request (the access log middleware calls this)."""
        method = method if method in METHODS else "OTHER"
        self._requests.labels(route, method, str(status)).inc()
        if status != SWITCHING_PROTOCOLS:
            self._latency.labels(route, method).observe(seconds)

    def committed(self, messages: int) -> None:
        """One transaction of the message writer appended ``messages`` messages."""
        self._committed.inc(messages)
        self._batch.observe(messages)

    def notify_lag(self, seconds: float) -> None:
        self._notify_lag.observe(max(seconds, 0.0))

    # --- read when scraped ----------------------------------------------------------

    def watch_sockets(self, count: Callable[[], int]) -> None:
        self._sampled.sockets.append(count)

    def watch_pool(self, usage: Callable[[], PoolUsage]) -> None:
        self._sampled.pools.append(usage)

    def watch_tasks(self, crashes: Callable[[], Mapping[str, int]]) -> None:
        """A supervisor's task name -> crashes (every task it runs, 0 included)."""
        self._sampled.tasks.append(crashes)

    def watch_mail(self, outcomes: Callable[[], Mapping[str, int]]) -> None:
        """The mail worker's outcome (sent, deferred, refused, unreadable) -> notices."""
        self._sampled.mail.append(outcomes)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition text (OpenMetrics if the scraper asks for it) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _Sampled(Collector):
    """The numbers other objects keep, read at each scrape."""

    def __init__(self) -> None:
        self.sockets: list[Callable[[], int]] = []
        self.pools: list[Callable[[], PoolUsage]] = []
        self.tasks: list[Callable[[], Mapping[str, int]]] = []
        self.mail: list[Callable[[], Mapping[str, int]]] = []

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "spokes_open_sockets",
            "WebSockets open on this instance",
            value=sum(count() for count in self.sockets),
        )
        usages = [usage() for usage in self.pools]
        for name, text, value in (
            ("size", "Connections the database pool holds", sum(u.size for u in usages)),
            ("idle", "Pooled connections waiting idle", sum(u.idle for u in usages)),
            ("max", "Connections the pool may open at most", sum(u.max_size for u in usages)),
        ):
            yield GaugeMetricFamily(f"spokes_db_pool_{name}", text, value=value)
        yield _labelled(
            "spokes_background_task_crashes",
            "Crashes of each supervised background task (each was logged and restarted)",
            "task",
            _tally(self.tasks),
        )
        yield _labelled(
            "spokes_mail_notices",
            "Mail notices handled by this instance's mail worker, by outcome",
            "outcome",
            _tally(self.mail),
        )


def _tally(sources: list[Callable[[], Mapping[str, int]]]) -> Tally[str]:
    total: Tally[str] = Tally()
    for source in sources:
        for name, value in source().items():
            total[name] += value
    return total


def _labelled(name: str, text: str, label: str, values: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


async def serve_metrics(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (0: a free port; see ``metrics.address``)."""

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    metrics.address = (str(bound[0]), int(bound[1]))
    return runner
