"""The services' own metrics, and the Protocols through which they read their service.

The encoder's engine is told of batches and model loads as they happen (`EncoderMetrics` is its
observer) and is read at scrape time for state (queue depth, loaded models); the indexer's job
manager is read at scrape time only. The shared library knows neither service: each is read
through the Protocol declared here, which the service's own classes satisfy structurally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from marsbench.schemas.jobs import JobStatus

# -- what the collectors read from their service ----------------------------------------------------


class EncoderEvents(Protocol):
    """What the encoder engine reports as it works (its `observer`)."""

    def batch_done(self, batcher: str, items: int, seconds: float) -> None: ...

    def model_loaded(self, model: str, seconds: float) -> None: ...

    def model_load_failed(self, model: str) -> None: ...

    def model_unloaded(self, model: str) -> None: ...


class EncoderState(Protocol):
    """What the encoder engine answers at scrape time."""

    def queue_depths(self) -> Mapping[tuple[str, str], int]:
        """Items waiting for a forward pass, per (model, modality)."""
        ...

    def loaded_models(self) -> Sequence[str]: ...

    def loaded_bytes(self) -> int: ...


class ObservedEncoder(EncoderState, Protocol):
    """The encoder engine as `install_observability` sees it: state to read, an observer to set."""

    observer: EncoderEvents


class JobSource(Protocol):
    """The indexer's job manager: every job it knows, finished ones included."""

    def list(self) -> Sequence[JobStatus]: ...


# -- the encoder ------------------------------------------------------------------------------------


class EncoderMetrics:
    """The encoder engine's observer (`EncoderEvents`): counts what it does; queue depth and loaded
    models are read at scrape time by `EncoderStateCollector` instead, as they are state, not events."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "marsbench_encoder_batch_size",
            "Items per forward pass.",
            ("model", "modality"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "marsbench_encoder_batch_seconds",
            "Duration of one forward pass.",
            ("model", "modality"),
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.items = Counter(
            "marsbench_encoder_embedded_items",
            "Items embedded; rate() of it is the items per second.",
            ("model", "modality"),
            registry=registry,
        )
        self.model_events = Counter(
            "marsbench_encoder_model_events",
            "Model loads, load failures and unloads.",
            ("model", "event"),
            registry=registry,
        )
        self.load_seconds = Histogram(
            "marsbench_encoder_model_load_seconds",
            "Time to load a model's weights.",
            ("model",),
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=registry,
        )

    def batch_done(self, batcher: str, items: int, seconds: float) -> None:
        model, _, modality = batcher.rpartition("/")  # batchers are named "<model>/<modality>"
        self.batch_size.labels(model, modality).observe(items)
        self.batch_seconds.labels(model, modality).observe(seconds)
        self.items.labels(model, modality).inc(items)

    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_events.labels(model, "load").inc()
        self.load_seconds.labels(model).observe(seconds)

    def model_load_failed(self, model: str) -> None:
        self.model_events.labels(model, "load_failed").inc()

    def model_unloaded(self, model: str) -> None:
        self.model_events.labels(model, "unload").inc()


class EncoderStateCollector:
    """Queue depth, models loaded and their bytes, read from the engine at scrape time."""

    def __init__(self, engine: EncoderState) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "marsbench_encoder_queued_items",
            "Items waiting for a forward pass (the queue depth), per model and modality.",
            labels=["model", "modality"],
        )
        for (model, modality), items in sorted(self._engine.queue_depths().items()):
            queued.add_metric([model, modality], items)
        yield queued
        yield GaugeMetricFamily(
            "marsbench_encoder_models_loaded", "Models in memory.", value=len(self._engine.loaded_models())
        )
        yield GaugeMetricFamily(
            "marsbench_encoder_loaded_bytes",
            "Bytes of loaded model weights.",
            value=self._engine.loaded_bytes(),
        )


def install_encoder_metrics(registry: CollectorRegistry, engine: ObservedEncoder) -> EncoderMetrics:
    """The engine's events and state in `registry`; the engine reports to the returned observer."""
    metrics = EncoderMetrics(registry)
    engine.observer = metrics
    registry.register(EncoderStateCollector(engine))
    return metrics


# -- the indexer ------------------------------------------------------------------------------------


def _job_states(jobs: Sequence[JobStatus]) -> GaugeMetricFamily:
    by_state = GaugeMetricFamily("marsbench_indexer_jobs", "Jobs known, by state.", labels=["state"])
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    for state, count in sorted(counts.items()):
        by_state.add_metric([state], count)
    return by_state


def _job_progress(jobs: Sequence[JobStatus]) -> tuple[GaugeMetricFamily, ...]:
    labels = ["job", "collection"]
    done = GaugeMetricFamily(
        "marsbench_indexer_job_done_items", "Items in the job's collection.", labels=labels
    )
    total = GaugeMetricFamily(
        "marsbench_indexer_job_total_items", "Items the job's dataset holds, once counted.", labels=labels
    )
    skipped = GaugeMetricFamily(
        "marsbench_indexer_job_skipped_items", "Items skipped (unreadable, bad rows).", labels=labels
    )
    rate = GaugeMetricFamily(
        "marsbench_indexer_job_items_per_second", "Items written per second by the job's run.", labels=labels
    )
    current = GaugeMetricFamily(
        "marsbench_indexer_job_state",
        "1 for the job's current state.",
        labels=[*labels, "task", "model", "state"],
    )
    for job in jobs:
        key = [job.id, job.collection]
        done.add_metric(key, job.done)
        skipped.add_metric(key, job.skipped)
        if job.total is not None:
            total.add_metric(key, job.total)
        if job.rate is not None:
            rate.add_metric(key, job.rate)
        current.add_metric([*key, job.task.value, job.model, job.state.value], 1)
    return done, total, skipped, rate, current


class IndexerJobsCollector:
    """Reads the job manager's state at scrape time: the jobs' own records are the truth (they
    survive restarts), so nothing is counted twice or lost when the indexer resumes a job."""

    def __init__(self, jobs: Callable[[], JobSource | None]) -> None:
        self._jobs = jobs  # None until the indexer's lifespan has made its job manager

    def collect(self) -> Iterator[Metric]:
        manager = self._jobs()
        jobs = manager.list() if manager is not None else []
        yield _job_states(jobs)
        yield from _job_progress(jobs)
