"""Load on the encoder: many concurrent clients mixing valid and invalid requests for a fixed time.

    python benchmarks/load_encoder.py [--duration 60] [--clients 64] [--json PATH]

Starts the encoder as its own process on loopback (uvicorn `--factory marsbench.encoder.app:create_app`,
MARSBENCH_ENCODER_DEVICE=cpu, MARSBENCH_ENCODER_PRELOAD=marsbench-tiny, --threads torch threads), then
`--clients` asyncio workers, each with the next request drawn from a seeded weighted mix:

- valid: texts (1-16 per request), images as data URIs (1-4), images on the binary multipart path (1-8);
- invalid: an undecodable image among good ones, a decompression bomb (a small PNG declaring more
  pixels than MARSBENCH_ENCODER_MAX_IMAGE_PIXELS), an unknown model, a text longer than
  MARSBENCH_ENCODER_MAX_TEXT_CHARS, more items than MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST, a body
  that is not JSON, a JSON body of the wrong shape.

It passes (exit 0) when: no answer was a 5xx, no request failed at the transport (reset, timeout), every
valid request got a 2xx or a 429 (backpressure), every invalid one a 4xx, and the server's RSS grew by
at most --rss-growth-mb between the end of a warm-up (--warmup seconds of the same load, excluded from
the latencies) and the end of the run. Latency p50/p99 per request kind, status counts, RSS samples and
the server's own /metrics totals are printed as a table and written as JSON. Loopback only: the script
binds and calls 127.0.0.1, so it never loads a machine on the network.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

MODEL = "marsbench-tiny"
HOST = "127.0.0.1"
DEFAULT_JSON = Path(tempfile.gettempdir()) / "marsbench-load-encoder.json"
# The encoder's defaults for its input limits (marsbench.encoder.settings); set explicitly on the
# server so the oversize requests are oversize whatever the environment says.
MAX_TEXT_CHARS = 20_000
MAX_ITEMS = 1000
MAX_IMAGE_PIXELS = 64_000_000


# -- request kinds --------------------------------------------------------------------------------


def png(seed: int, size: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A PNG of ~80 KB on the wire that declares 9,000 x 9,000 pixels (81 M > the 64 M limit)."""
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Kind:
    name: str
    valid: bool
    weight: float
    build: Callable[[random.Random], dict[str, Any]]  # keyword arguments for httpx's request()


def kinds() -> list[Kind]:
    images = [png(i, 48 + 8 * (i % 5)) for i in range(16)]
    bomb = data_uri(bomb_png())
    words = ["crater", "yardang", "dune", "gully", "fan", "ridge", "channel", "mound", "a", "dark", "bright"]

    def texts(rng: random.Random) -> dict[str, Any]:
        batch = [" ".join(rng.choices(words, k=rng.randint(2, 12))) for _ in range(rng.randint(1, 16))]
        return {"method": "POST", "url": "/v1/embeddings", "json": {"model": MODEL, "input": batch}}

    def image_json(rng: random.Random) -> dict[str, Any]:
        batch = [data_uri(rng.choice(images)) for _ in range(rng.randint(1, 4))]
        body = {"model": MODEL, "modality": "image", "input": batch}
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    def image_binary(rng: random.Random) -> dict[str, Any]:
        files = [("images", (f"{i}.png", rng.choice(images), "image/png")) for i in range(rng.randint(1, 8))]
        return {"method": "POST", "url": "/v1/embeddings/images", "data": {"model": MODEL}, "files": files}

    def bad_image(rng: random.Random) -> dict[str, Any]:
        batch = [data_uri(rng.choice(images)), data_uri(rng.choice(images)[: rng.randint(0, 200)])]
        rng.shuffle(batch)
        body = {"model": MODEL, "modality": "image", "input": batch}
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    def decompression_bomb(rng: random.Random) -> dict[str, Any]:
        body = {"model": MODEL, "modality": "image", "input": [bomb]}
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    def unknown_model(rng: random.Random) -> dict[str, Any]:
        body = {"model": f"no-such-model-{rng.randint(0, 9)}", "input": ["a crater"]}
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    def oversize_text(rng: random.Random) -> dict[str, Any]:
        body = {"model": MODEL, "input": ["crater " * (MAX_TEXT_CHARS // 7 + 100)]}
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    def oversize_items(rng: random.Random) -> dict[str, Any]:
        body = {"model": MODEL, "input": ["a"] * (MAX_ITEMS + 1)}
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    def bad_json(rng: random.Random) -> dict[str, Any]:
        content = rng.choice([b'{"model": "marsbench-tiny", "input": [', b"\xff\xfe not json", b""])
        return {
            "method": "POST",
            "url": "/v1/embeddings",
            "content": content,
            "headers": {"content-type": "application/json"},
        }

    def wrong_shape(rng: random.Random) -> dict[str, Any]:
        body = rng.choice([{"model": MODEL}, {"model": MODEL, "input": [1, 2]}, {"input": "x"}, [MODEL]])
        return {"method": "POST", "url": "/v1/embeddings", "json": body}

    return [
        Kind("text", True, 30, texts),
        Kind("image_json", True, 15, image_json),
        Kind("image_binary", True, 15, image_binary),
        Kind("bad_image", False, 8, bad_image),
        Kind("decompression_bomb", False, 3, decompression_bomb),
        Kind("unknown_model", False, 8, unknown_model),
        Kind("oversize_text", False, 5, oversize_text),
        Kind("oversize_items", False, 4, oversize_items),
        Kind("bad_json", False, 6, bad_json),
        Kind("wrong_shape", False, 6, wrong_shape),
    ]


# -- the server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_encoder(threads: int, log_path: Path, max_queued: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MARSBENCH_HOST": HOST,
        "MARSBENCH_ENCODER_DEVICE": "cpu",
        "MARSBENCH_ENCODER_PRELOAD": MODEL,
        "MARSBENCH_ENCODER_MAX_QUEUED_ITEMS": str(max_queued),
        "MARSBENCH_ENCODER_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS),
        "MARSBENCH_ENCODER_MAX_ITEMS_PER_REQUEST": str(MAX_ITEMS),
        "MARSBENCH_ENCODER_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "MARSBENCH_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "marsbench.encoder.app:create_app"]
    cmd += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"encoder exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("encoder not ready after 180 s")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- the load -------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    transport_errors: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)  # a few examples, for the report

    def add(self, status: int, ms: float, kind: Kind, body: str) -> None:
        self.latencies_ms.append(ms)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if not expected(kind, status) and len(self.unexpected) < 5:
            self.unexpected.append(f"{status}: {body[:200]}")


def expected(kind: Kind, status: int) -> bool:
    if kind.valid:
        return 200 <= status < 300 or status == 429
    return 400 <= status < 500


async def worker(
    client: httpx.AsyncClient,
    kinds_: list[Kind],
    rng: random.Random,
    stop_at: float,
    record: dict[str, Tally],
) -> None:
    weights = [k.weight for k in kinds_]
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        kind = rng.choices(kinds_, weights)[0]
        request = kind.build(rng)
        started = time.perf_counter()
        tally = record.setdefault(kind.name, Tally())
        try:
            response = await client.request(**request)
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            tally.transport_errors[name] = tally.transport_errors.get(name, 0) + 1
            continue
        tally.add(response.status_code, (time.perf_counter() - started) * 1000, kind, response.text)
        if response.status_code == 429:  # backpressure: honour it briefly, like the client does
            await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0) * rng.random())


async def drive(url: str, clients: int, seconds: float, seed: int, kinds_: list[Kind]) -> dict[str, Tally]:
    record: dict[str, Tally] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        stop_at = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(
            *(worker(client, kinds_, random.Random(seed * 1000 + i), stop_at, record) for i in range(clients))
        )
    return record


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def server_totals(url: str) -> dict[str, Any]:
    """The server's own account, from /metrics: answers by status class, items embedded, batches."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    by_class: dict[str, float] = {}
    items = batches = batch_items = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "marsbench_http_requests_total" and sample.labels.get("route") != "/metrics":
                key = sample.labels["status"][0] + "xx"
                by_class[key] = by_class.get(key, 0) + sample.value
            elif sample.name == "marsbench_encoder_embedded_items_total":
                items += sample.value
            elif sample.name == "marsbench_encoder_batch_size_count":
                batches += sample.value
            elif sample.name == "marsbench_encoder_batch_size_sum":
                batch_items += sample.value
    return {
        "answers_by_status_class": by_class,
        "embedded_items": items,
        "batches": batches,
        "mean_batch_size": batch_items / batches if batches else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of measured load.")
    parser.add_argument("--warmup", type=float, default=5.0, help="Seconds of load before measuring.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients.")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads of the server.")
    parser.add_argument("--max-queued", type=int, default=256, help="Server's MAX_QUEUED_ITEMS (429 beyond).")
    parser.add_argument("--rss-growth-mb", type=float, default=150.0, help="Allowed RSS growth (MiB).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="Where the results go.")
    args = parser.parse_args()

    kinds_ = kinds()
    log_path = Path(tempfile.mkdtemp(prefix="marsbench-load-")) / "encoder.log"
    proc, url = start_encoder(args.threads, log_path, args.max_queued)
    rss: list[tuple[float, int]] = []
    try:
        rss_start = rss_bytes(proc.pid)
        asyncio.run(drive(url, args.clients, args.warmup, args.seed + 1, kinds_))
        rss_warm = rss_bytes(proc.pid)

        async def measured() -> dict[str, Tally]:
            started = time.monotonic()

            async def sample() -> None:
                while True:
                    rss.append((round(time.monotonic() - started, 1), rss_bytes(proc.pid)))
                    await asyncio.sleep(1.0)

            sampler = asyncio.create_task(sample())
            try:
                return await drive(url, args.clients, args.duration, args.seed, kinds_)
            finally:
                sampler.cancel()

        wall = time.monotonic()
        record = asyncio.run(measured())
        wall = time.monotonic() - wall
        time.sleep(1.0)  # let the last batches finish and memory settle before the final reading
        rss_end = rss_bytes(proc.pid)
        totals = server_totals(url)
        alive = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    rows = []
    for kind in kinds_:
        tally = record.get(kind.name, Tally())
        rows.append(
            {
                "kind": kind.name,
                "valid": kind.valid,
                "requests": len(tally.latencies_ms),
                "per_s": round(len(tally.latencies_ms) / wall, 1),
                "p50_ms": percentile(tally.latencies_ms, 50),
                "p99_ms": percentile(tally.latencies_ms, 99),
                "statuses": dict(sorted(tally.statuses.items())),
                "transport_errors": tally.transport_errors,
                "unexpected_examples": tally.unexpected,
            }
        )
    all_5xx = sum(n for r in rows for s, n in r["statuses"].items() if s.startswith("5"))
    transport = sum(n for r in rows for n in r["transport_errors"].values())
    unexpected = sum(
        n
        for r, k in zip(rows, kinds_, strict=True)
        for s, n in r["statuses"].items()
        if not expected(k, int(s))
    )
    growth_mb = (rss_end - rss_warm) / 2**20
    checks = {
        "zero_5xx": all_5xx == 0 and totals["answers_by_status_class"].get("5xx", 0) == 0,
        "zero_transport_errors": transport == 0,
        "statuses_as_expected": unexpected == 0,
        "rss_growth_within_bound": growth_mb <= args.rss_growth_mb,
        "server_alive_after": alive,
    }
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "server_torch_threads": args.threads,
            "max_queued_items": args.max_queued,
            "rss_growth_bound_mb": args.rss_growth_mb,
            "seed": args.seed,
            "model": MODEL,
            "cpu_count": os.cpu_count(),
        },
        "wall_s": round(wall, 1),
        "requests": sum(r["requests"] for r in rows),
        "kinds": rows,
        "rss_mb": {
            "start": round(rss_start / 2**20, 1),
            "after_warmup": round(rss_warm / 2**20, 1),
            "end": round(rss_end / 2**20, 1),
            "peak": round(max([b for _, b in rss] + [rss_end]) / 2**20, 1),
            "growth": round(growth_mb, 1),
            "samples": [(t, round(b / 2**20, 1)) for t, b in rss],
        },
        "server_metrics": totals,
        "checks": checks,
        "passed": all(checks.values()),
    }
    args.json.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"\nresults: {args.json}\nserver log: {log_path}")
    return 0 if result["passed"] else 1


def print_table(result: dict[str, Any]) -> None:
    head = f"{'kind':<20}{'valid':>6}{'requests':>10}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  statuses"
    print(head)
    print("-" * len(head))
    for row in result["kinds"]:
        p50 = f"{row['p50_ms']:.1f}" if row["p50_ms"] is not None else "-"
        p99 = f"{row['p99_ms']:.1f}" if row["p99_ms"] is not None else "-"
        statuses = " ".join(f"{s}:{n}" for s, n in row["statuses"].items())
        errors = " ".join(f"{e}:{n}" for e, n in row["transport_errors"].items())
        print(
            f"{row['kind']:<20}{'yes' if row['valid'] else 'no':>6}{row['requests']:>10}{row['per_s']:>8}"
            f"{p50:>9}{p99:>9}  {statuses}{' ' + errors if errors else ''}"
        )
    mem = result["rss_mb"]
    metrics = result["server_metrics"]
    print(
        f"\n{result['requests']} requests in {result['wall_s']} s "
        f"from {result['settings']['clients']} clients; "
        f"server RSS {mem['start']} -> {mem['after_warmup']} (after warm-up) -> {mem['end']} MiB "
        f"(peak {mem['peak']}, growth {mem['growth']} MiB, bound {result['settings']['rss_growth_bound_mb']})"
    )
    mean_batch = metrics["mean_batch_size"]
    print(
        f"server /metrics: answers {metrics['answers_by_status_class']}, {metrics['embedded_items']:.0f} "
        f"items embedded in {metrics['batches']:.0f} batches"
        + (f" (mean {mean_batch:.1f})" if mean_batch else "")
    )
    print("checks: " + ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in result["checks"].items()))


if __name__ == "__main__":
    sys.exit(main())
