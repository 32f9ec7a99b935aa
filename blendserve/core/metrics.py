"""Prometheus metrics (prometheus_client), one CollectorRegistry per app so that many apps in one process (the
tests) never share or collide. Names are `blendserve_*` with their unit in the name; the README lists them.

Two kinds: event metrics (histograms and the webhook counter) are updated as things happen; state metrics are
read at scrape time from the dispatcher (its counters, pending set, workers) and from a database snapshot the
route takes off the event loop first (`render(counts)`): the collector itself does no I/O."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from blendserve import __version__
from blendserve.core.dispatch.health import BreakerState
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.dispatch.stats import LineEvent
from blendserve.core.overview import StatusCounts
from blendserve.core.plan import Planner

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_seconds = Histogram(
            "blendserve_http_request_duration_seconds",
            "API request latency, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.line_seconds = Histogram(
            "blendserve_line_duration_seconds",
            "Time a line spent on the runtime (dispatch to result), by outcome and worker.",
            ["outcome", "worker"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.wave_seconds = Histogram(
            "blendserve_dispatch_wave_duration_seconds",
            "Time to pick a wave of lines from the tree and mark them in flight.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.state = StateCollector()
        self.registry.register(self.state)

    def attach(self, dispatcher: Dispatcher, planner: Planner) -> None:
        """Subscribe to the dispatcher's events and read its state at scrape time."""
        self.state.dispatcher, self.state.planner = dispatcher, planner
        dispatcher.stats.line_observers.append(self._on_line)
        dispatcher.stats.wave_observers.append(lambda _lines, seconds: self.wave_seconds.observe(seconds))

    def _on_line(self, event: LineEvent) -> None:
        self.line_seconds.labels(event.outcome, event.worker).observe(event.seconds)

    def attach_webhooks(self, sender_stats: dict[str, int]) -> None:
        """Read the webhook sender's counts (core/webhooks.WebhookSender.stats) at scrape time."""
        self.state.webhook_stats = sender_stats

    def render(self, counts: StatusCounts | None) -> bytes:
        """The text exposition format. `counts`: the database snapshot (None if the database did not answer)."""
        self.state.counts = counts
        return generate_latest(self.registry)


class StateCollector(Collector):
    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None
        self.planner: Planner | None = None
        self.counts: StatusCounts | None = None
        self.webhook_stats: dict[str, int] | None = None

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("blendserve_build_info", "Version of the running server.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _gauge("blendserve_database_up", "1 when the database answered the scrape's counts.", self.counts)
        if self.counts is not None:
            yield _by("blendserve_batches", "Batches by status (all tenants).", "status", self.counts.batches)
            yield _by("blendserve_lines", "Request lines by stored status (all tenants).", "status", self.counts.lines)
        if self.webhook_stats is not None:
            hooks = CounterMetricFamily(
                "blendserve_webhook_deliveries",
                "Webhook delivery attempts: delivered, failed (an attempt that will be retried or was the last), "
                "gave_up (a delivery abandoned after its retry window).",
                labels=["outcome"],
            )
            for outcome, key in (("delivered", "delivered"), ("failed", "failed_attempts"), ("gave_up", "gave_up")):
                hooks.add_metric([outcome], self.webhook_stats.get(key, 0))
            yield hooks
        if self.dispatcher is not None and self.planner is not None:
            yield from self._dispatcher(self.dispatcher, self.planner)

    def _dispatcher(self, d: Dispatcher, planner: Planner) -> Iterator[Metric]:
        s = d.stats
        lines = CounterMetricFamily(
            "blendserve_lines_processed", "Lines the dispatcher handled, by outcome.", labels=["outcome"]
        )
        for outcome, value in (("dispatched", s.dispatched), ("succeeded", s.succeeded), ("failed", s.failed)):
            lines.add_metric([outcome], value)
        lines.add_metric(["retried"], s.retried)
        yield lines
        yield CounterMetricFamily("blendserve_batches_finalized", "Batches finalized.", value=s.finalized)
        for kind, value in (
            ("prompt", s.prompt_tokens),
            ("cached", s.cached_tokens),
            ("completion", s.completion_tokens),
        ):
            yield CounterMetricFamily(
                f"blendserve_{kind}_tokens", f"{kind.capitalize()} tokens of lines that ran.", value=value
            )
        yield _gauge("blendserve_dispatcher_active", "1 when this process holds the dispatch lease.", d.holding)
        breaker = GaugeMetricFamily(
            "blendserve_runtime_breaker_state",
            "The runtime circuit breaker: 1 for its current state (closed = healthy, dispatching).",
            labels=["state"],
        )
        for state in BreakerState:
            breaker.add_metric([str(state)], 1.0 if d.health.state == state else 0.0)
        yield breaker
        yield _gauge(
            "blendserve_runtime_up", "1 while the runtime's breaker is closed.", d.health.state == BreakerState.CLOSED
        )
        tree = d.pending.tree
        yield GaugeMetricFamily("blendserve_tree_requests", "Lines waiting in the global prefix tree.", value=len(tree))
        yield GaugeMetricFamily(
            "blendserve_tree_prompt_tokens", "Prompt tokens of the waiting lines.", value=tree.prompt_tokens
        )
        yield GaugeMetricFamily(
            "blendserve_tree_unique_tokens",
            "Distinct prompt tokens in the tree (shared prefixes once).",
            value=tree.root.tok,
        )
        yield GaugeMetricFamily(
            "blendserve_pacing_cap_lines",
            "Lines decode pacing allows in flight while a long generation runs (+Inf: not pacing, or lanes).",
            value=d.pending.pacing_cap(),
        )
        yield from self._workers(d, planner)

    def _workers(self, d: Dispatcher, planner: Planner) -> Iterator[Metric]:
        labels = ["side", "worker"]
        queue = GaugeMetricFamily(
            "blendserve_queue_depth_lines", "Waiting lines by the scanner side expected to take them.", labels=labels
        )
        inflight = GaugeMetricFamily(
            "blendserve_inflight_lines", "Lines in flight by scanner side and worker.", labels=labels
        )
        kv = GaugeMetricFamily(
            "blendserve_inflight_kv_tokens", "KV footprint in flight by scanner side and worker.", labels=labels
        )
        window = GaugeMetricFamily("blendserve_worker_window_lines", "Most lines a worker may hold.", labels=["worker"])
        schedule = planner.schedule()
        for w in d.workers():
            for side in ("L", "R"):
                # one worker today holds the whole tree; with several, the pinned subtrees split the queue
                queue.add_metric([side, w.worker], schedule.sides[side])
                inflight.add_metric([side, w.worker], w.inflight_lines.get(side, 0))
                kv.add_metric([side, w.worker], w.inflight_kv_tokens.get(side, 0.0))
            window.add_metric([w.worker], w.window)
        yield from (queue, inflight, kv, window)
        rates = planner.rates()
        yield GaugeMetricFamily(
            "blendserve_plan_latency_ratio",
            "Wall seconds per modelled GPU second of a line (the plans' online calibration).",
            value=rates.latency_ratio,
        )
        if rates.work_rate is not None:
            yield GaugeMetricFamily(
                "blendserve_work_rate_ratio",
                "Modelled GPU seconds of work finished per wall second while busy.",
                value=rates.work_rate,
            )


def _gauge(name: str, doc: str, truthy: object) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=1.0 if truthy else 0.0)


def _by(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([str(key)], value)
    return family
