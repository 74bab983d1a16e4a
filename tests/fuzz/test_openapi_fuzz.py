"""Schemathesis against each service's own OpenAPI document, over loopback HTTP: no 5xx, no crash.

The three services run as real uvicorn servers (`LocalStack`): the encoder serves marsbench-tiny, the
indexer and evaluator share a temporary embedded store holding one small indexed collection, so list
endpoints answer with real records. Each operation gets a bounded number of generated requests
(valid and schema-violating), derandomized so a CI failure replays; every operation's test also has
a wall-clock limit. Random model and collection names would stop at "unknown model", so each case is
sent twice: as generated, and aimed (the same request naming the served model, the indexed collection
and dataset), which drives the fuzzed text, images and options through embedding and search.
After the run, each service is still healthy and its own /metrics counted no 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from marsbench.cli.stack import LocalStack, StackUrls
from marsbench.encoder.app import create_app as create_encoder
from marsbench.encoder.settings import EncoderSettings
from marsbench.evaluator.app import create_app as create_evaluator
from marsbench.evaluator.settings import EvaluatorSettings
from marsbench.indexer.app import create_app as create_indexer
from marsbench.indexer.settings import IndexerSettings
from tests.conftest import png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

MAX_EXAMPLES = 30  # per operation, each sent as generated and aimed: ~30 s for the three services
REQUEST_TIMEOUT_S = 15.0
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # time is bounded per request (REQUEST_TIMEOUT_S) and per test (pytest-timeout)
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure reports its request as generated
    suppress_health_check=list(HealthCheck),
)

# The documents come from the apps themselves; building an app starts nothing (no lifespan).
ENCODER = schemathesis.openapi.from_dict(create_encoder(EncoderSettings()).openapi())
INDEXER = schemathesis.openapi.from_dict(create_indexer(IndexerSettings()).openapi())
EVALUATOR = schemathesis.openapi.from_dict(create_evaluator(EvaluatorSettings()).openapi())


@dataclass(frozen=True)
class Target:
    urls: StackUrls
    collection: str
    dataset: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    dataset = tmp_path_factory.mktemp("fuzz-data") / "dataset"
    for pattern, name in enumerate(("crater", "yardang")):
        (dataset / name).mkdir(parents=True)
        for i in range(3):
            (dataset / name / f"{name}_{i}.png").write_bytes(png_bytes(10 * pattern + i, pattern=pattern))
    encoder = EncoderSettings(preload=["marsbench-tiny"], max_wait_ms=1)
    with LocalStack(data_dir=tmp_path_factory.mktemp("fuzz-state"), encoder_settings=encoder) as urls:
        yield Target(urls, _index(urls, dataset), str(dataset))


def _index(urls: StackUrls, dataset: Path) -> str:
    body = {"task": "landform", "model": "marsbench-tiny", "dataset_dir": str(dataset)}
    with httpx.Client(timeout=60) as http:
        job = http.post(f"{urls.indexer}/v1/jobs", json=body).raise_for_status().json()
        deadline = time.monotonic() + 60
        while job["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = http.get(f"{urls.indexer}/v1/jobs/{job['id']}").raise_for_status().json()
    assert job["state"] == "succeeded", job
    return str(job["collection"])


AIMED = {"model", "collection", "dataset_dir"}  # body fields a random value would only make unknown


def _call(case: schemathesis.Case, base_url: str, target: Target) -> None:
    _expect_no_server_error(case, case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S))
    if isinstance(case.body, dict) and AIMED & case.body.keys():
        aimed = {"model": "marsbench-tiny", "collection": target.collection, "dataset_dir": target.dataset}
        case.body = {**case.body, **{k: v for k, v in aimed.items() if k in case.body}}
        _expect_no_server_error(case, case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S))


# What each answer must satisfy: no 5xx, a status the document declares for the operation, a body
# matching the schema declared for that status, and the declared content type.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


def _expect_no_server_error(case: schemathesis.Case, response: Any) -> None:
    assert response.status_code < 500, (
        f"{response.status_code} from {case.operation.label}: {response.text[:500]}\n"
        f"replay: {case.as_curl_command()}"
    )
    case.validate_response(response, checks=CHECKS)


@ENCODER.parametrize()
@FUZZ
def test_encoder(case: schemathesis.Case, stack: Target) -> None:
    _call(case, stack.urls.encoder, stack)


@INDEXER.parametrize()
@FUZZ
def test_indexer(case: schemathesis.Case, stack: Target) -> None:
    _call(case, stack.urls.indexer, stack)


@EVALUATOR.parametrize()
@FUZZ
def test_evaluator(case: schemathesis.Case, stack: Target) -> None:
    _call(case, stack.urls.evaluator, stack)


def test_every_service_survived_and_counted_no_server_error(stack: Target) -> None:
    """Runs after the fuzzing above (file order): the services are up and their own counters agree."""
    with httpx.Client(timeout=10) as http:
        for url in (stack.urls.encoder, stack.urls.indexer, stack.urls.evaluator):
            assert http.get(f"{url}/healthz").status_code == 200
            metrics = http.get(f"{url}/metrics").raise_for_status().text
            answered = [
                sample
                for family in text_string_to_metric_families(metrics)
                for sample in family.samples
                if sample.name == "marsbench_http_requests_total"
            ]
            assert sum(s.value for s in answered) > 0
            assert [s.labels for s in answered if s.labels["status"].startswith("5")] == []


@pytest.mark.parametrize("schema", [ENCODER, INDEXER, EVALUATOR], ids=["encoder", "indexer", "evaluator"])
def test_documents_declare_the_error_bodies_the_services_send(schema: Any) -> None:
    """Every /v1 operation declares 401 (the API key) and every error status names `ErrorBody`: the
    services send no other error shape, FastAPI's validation errors included."""
    document = schema.raw_schema
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            if path.startswith("/v1/"):
                assert "401" in answers, f"{method} {path}"
            for status, answer in answers.items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    schema_ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert schema_ref.endswith("/ErrorBody"), f"{method} {path} {status}"
