"""`/metrics` on each service: request counts and latency by route template and status, the encoder's
queue, batches, items and model events, and the indexer's job progress and skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from marsbench.encoder.app import create_app as create_encoder
from marsbench.encoder.core.engine import EncoderEngine
from marsbench.encoder.registry import ModelSpec, registered_specs
from marsbench.encoder.settings import EncoderSettings
from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.core.jobs import JobManager
from marsbench.indexer.settings import IndexerSettings
from marsbench.schemas.datauri import encode_data_uri
from marsbench.store import EmbeddedStore
from tests.conftest import png_bytes
from tests.fakes import FakeEncoder

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of the exposition, keyed by (sample name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def encoder(tiny_clip_dir: Path) -> Iterator[TestClient]:
    specs = registered_specs()
    source = f"local-dir:{tiny_clip_dir}"
    specs["tiny-a"] = ModelSpec(name="tiny-a", family="open_clip", source=source)
    specs["tiny-b"] = ModelSpec(name="tiny-b", family="open_clip", source=source)
    settings = EncoderSettings(preload=["tiny-a"], max_wait_ms=1, max_loaded_models=1)
    with TestClient(create_encoder(engine=EncoderEngine(settings, specs=specs))) as client:
        yield client


def test_encoder_counts_requests_by_route_template_and_status(encoder: TestClient) -> None:
    assert (
        encoder.post("/v1/embeddings", json={"model": "tiny-a", "input": ["a", "b", "c"]}).status_code == 200
    )
    assert encoder.get("/v1/models/no-such-model", params={"load": "false"}).status_code == 404
    assert encoder.get("/v1/models/other-missing", params={"load": "false"}).status_code == 404
    bad_json = encoder.post("/v1/embeddings", content=b"{not", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    assert encoder.get("/no/such/path").status_code == 404
    samples = scrape(encoder)
    total = "marsbench_http_requests_total"
    assert value(samples, total, method="POST", route="/v1/embeddings", status="200") == 1
    assert value(samples, total, method="POST", route="/v1/embeddings", status="422") == 1
    # Both model names land in one series: the route's template, not its path.
    assert value(samples, total, method="GET", route="/v1/models/{ref:path}", status="404") == 2
    assert value(samples, total, method="GET", route="<unmatched>", status="404") == 1
    latency = "marsbench_http_request_duration_seconds_count"
    assert value(samples, latency, method="POST", route="/v1/embeddings", status="200") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_encoder_reports_batches_items_queue_and_model_events(encoder: TestClient) -> None:
    texts = {"model": "tiny-a", "input": ["a crater", "a yardang"]}
    images = {
        "model": "tiny-a",
        "modality": "image",
        "input": [encode_data_uri(png_bytes(i)) for i in range(3)],
    }
    assert encoder.post("/v1/embeddings", json=texts).status_code == 200
    assert encoder.post("/v1/embeddings", json=images).status_code == 200
    samples = scrape(encoder)
    assert value(samples, "marsbench_encoder_embedded_items_total", model="tiny-a", modality="text") == 2
    assert value(samples, "marsbench_encoder_embedded_items_total", model="tiny-a", modality="image") == 3
    assert value(samples, "marsbench_encoder_batch_size_count", model="tiny-a", modality="image") == 1
    assert value(samples, "marsbench_encoder_batch_size_sum", model="tiny-a", modality="image") == 3
    assert value(samples, "marsbench_encoder_queued_items", model="tiny-a", modality="text") == 0
    assert value(samples, "marsbench_encoder_models_loaded") == 1
    assert value(samples, "marsbench_encoder_model_events_total", model="tiny-a", event="load") == 1
    # One model fits (max_loaded_models=1): loading another unloads the first.
    assert encoder.get("/v1/models/tiny-b", params={"load": "true"}).status_code == 200
    samples = scrape(encoder)
    assert value(samples, "marsbench_encoder_model_events_total", model="tiny-b", event="load") == 1
    assert value(samples, "marsbench_encoder_model_events_total", model="tiny-a", event="unload") == 1
    assert value(samples, "marsbench_encoder_model_load_seconds_count", model="tiny-b") == 1


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    """Tests and the local stack build many apps in one process: no clash, no shared counts."""
    settings = EvaluatorSettings(data_dir=tmp_path)
    with EmbeddedStore(tmp_path / "qdrant") as store:
        first, second = create_evaluator(settings, store=store), create_evaluator(settings, store=store)
        with TestClient(first) as one, TestClient(second) as two:
            one.get("/healthz")
            one.get("/healthz")
            two.get("/healthz")
            key = {"method": "GET", "route": "/healthz", "status": "200"}
            assert value(scrape(one), "marsbench_http_requests_total", **key) == 2
            assert value(scrape(two), "marsbench_http_requests_total", **key) == 1


def test_indexer_exposes_job_progress_and_skips(tmp_path: Path, landform_folders: Path) -> None:
    settings = IndexerSettings(data_dir=tmp_path, encoder_urls=["http://127.0.0.1:9"], resume_jobs=False)
    with EmbeddedStore(tmp_path / "qdrant") as store:
        app = create_indexer(settings, store=store)
        with TestClient(app) as client:
            assert value(scrape(client), "marsbench_indexer_jobs", state="succeeded") is None
            # The real encoder is another service; the job manager runs here on a deterministic stand-in.
            app.state.jobs.shutdown()
            jobs = JobManager(store, FakeEncoder(), tmp_path / "jobs", batch_size=4, in_flight=2)
            app.state.jobs = jobs
            body = {"task": "landform", "model": "fake", "dataset_dir": str(landform_folders)}
            created = client.post("/v1/jobs", json=body)
            assert created.status_code == 202
            job = jobs.wait(created.json()["id"], 30)
            samples = scrape(client)
    key = {"job": job.id, "collection": job.collection}
    assert value(samples, "marsbench_indexer_jobs", state="succeeded") == 1
    assert value(samples, "marsbench_indexer_job_done_items", **key) == 15
    assert value(samples, "marsbench_indexer_job_total_items", **key) == 16
    assert value(samples, "marsbench_indexer_job_skipped_items", **key) == 1
    state = {**key, "task": "landform", "model": "fake", "state": "succeeded"}
    assert value(samples, "marsbench_indexer_job_state", **state) == 1
    assert value(samples, "marsbench_http_requests_total", method="POST", route="/v1/jobs", status="202") == 1
