"""/metrics: the store and the daemon as Prometheus metrics, all named `instafly_*`.

A custom collector reads the status document at scrape time (no counters kept in memory that a
restart would reset), in its own registry so several apps (tests) never share metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from instaflyd.status.document import ComponentStatus, StatusDocument

StatusSource = Callable[[], StatusDocument]


class StatusCollector(Collector):
    """Turns the status document into metric families."""

    def __init__(self, status: StatusSource) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        capture, model, drop = status.capture, status.model, status.drop_folder
        totals = capture.totals

        yield CounterMetricFamily(
            "instafly_flows", "Instagram responses the proxy has seen", value=totals.flows
        )
        for name, help_text in (
            ("posts", "Posts in the store"),
            ("accounts", "Accounts in the store"),
            ("images", "Images in the store"),
            ("labelled", "Labelled posts (photo, likes, followers and image known)"),
        ):
            yield GaugeMetricFamily(f"instafly_{name}", help_text, value=getattr(totals, name))
        if capture.last_capture is not None:
            yield GaugeMetricFamily(
                "instafly_last_capture_timestamp_seconds",
                "When a post was last captured (Unix time)",
                value=capture.last_capture,
            )
        tls = CounterMetricFamily(
            "instafly_tls_failures", "Failed TLS handshakes with clients, by host", labels=["host"]
        )
        for row in capture.tls_failures:
            tls.add_metric([row.host], row.count)
        yield tls

        yield GaugeMetricFamily(
            "instafly_model_version", "Current model version (0: none)", value=model.version or 0
        )
        yield GaugeMetricFamily(
            "instafly_model_samples",
            "Labelled posts the current model used",
            value=model.samples,
        )
        for key in ("val_srcc", "val_pairwise_accuracy"):
            if (value := getattr(model, key)) is not None:
                yield GaugeMetricFamily(
                    f"instafly_model_{key}",
                    f"Current model's validation {key[4:]}",
                    value=value,
                )
        training = model.training
        yield GaugeMetricFamily(
            "instafly_training_running", "1 while a training run is in progress",
            value=int(training.running),
        )  # fmt: skip
        if training.running:
            yield GaugeMetricFamily(
                "instafly_training_progress", "Share of the running training's epochs done",
                value=training.progress,
            )  # fmt: skip
        nxt = model.next_training
        yield GaugeMetricFamily(
            "instafly_training_due", "1 when training is due", value=int(nxt.due)
        )
        yield GaugeMetricFamily(
            "instafly_training_posts_needed",
            "More labelled posts needed before training is due",
            value=nxt.needed,
        )
        yield GaugeMetricFamily(
            "instafly_weights_ok", "1 when the model's weights are usable",
            value=int(model.weights.ok),
        )  # fmt: skip

        jobs = GaugeMetricFamily("instafly_jobs", "Drop-folder jobs by state", labels=["state"])
        for state, count in drop.jobs.items():
            jobs.add_metric([state], count)
        yield jobs

        up = GaugeMetricFamily(
            "instafly_component_up", "1 when the component is running", labels=["component"]
        )
        restarts = CounterMetricFamily(
            "instafly_component_restarts",
            "Restarts of the component since the daemon started",
            labels=["component"],
        )
        for name, component in status.components.items():
            # the supervised ones; the trainer runs only now and then
            if isinstance(component, ComponentStatus):
                up.add_metric([name], int(component.state == "running"))
                restarts.add_metric([name], component.restarts)
        yield up
        yield restarts

        problem = GaugeMetricFamily(
            "instafly_problem",
            "1 for each problem on the repairs list, by id and severity",
            labels=["id", "severity"],
        )
        for entry in status.repairs.problems:
            problem.add_metric([entry.id, entry.severity], 1)
        yield problem
        problems = GaugeMetricFamily(
            "instafly_problems", "Problems on the repairs list, by severity", labels=["severity"]
        )
        problems.add_metric(["error"], status.repairs.errors)
        problems.add_metric(["warning"], status.repairs.warnings)
        yield problems


def render_metrics(status: StatusSource) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)
