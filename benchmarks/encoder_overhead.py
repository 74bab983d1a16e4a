"""Encoder service overhead: HTTP throughput and latency against the same model in process.

    python benchmarks/encoder_overhead.py [--models marsbench-tiny,open_clip:ViT-B-32:random] [--json PATH]

For each model it starts the encoder as its own process (uvicorn, `--factory
marsbench.encoder.app:create_app`, MARSBENCH_ENCODER_DEVICE=cpu, MARSBENCH_ENCODER_PRELOAD=<model>,
OMP_NUM_THREADS=--threads) and loads the same model in this process with the same adapter code and
`torch.set_num_threads(--threads)`. Images are real PNG bytes: 512-px tiles read from the synthetic
geo WebDataset shards (`marsbench.datasets.synth`, made once under --data and reused).

Measured side by side, interleaved in every repeat (ABBA order, so drift in the machine's load
hits both alike):

- saturation: the same `--images` tiles (a) through a plain in-process loop, per batch of the
  model's batch size: decode, preprocess, stack, forward; (b) through `POST /v1/embeddings/images`
  (the binary path, `EncoderClient.embed_images`) from `--clients` concurrent client threads, each
  with its own keep-alive connection, sending `--request-size` images per request.
  Ratio: HTTP images/s / in-process images/s.
- low load: one 1-image request at a time, against the model's single-item forward time in
  process. "Forward" is `model.embed_prepared([x])` on an already preprocessed tensor: stack,
  `encode_image`, L2-normalise, copy to numpy. Also shown: decode + preprocess + forward of one
  image in process, and the same request to a second encoder started with
  MARSBENCH_ENCODER_MAX_WAIT_MS=0 (the batcher's collection wait off), to separate that wait from
  the rest of the HTTP path.

CPU seconds of the server process (from /proc) and of this process are recorded per condition.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from marsbench.client import EncoderClient

DEFAULT_DATA = Path(tempfile.gettempdir()) / "marsbench-bench" / "geo512-small-seed0"
DEFAULT_MODELS = "marsbench-tiny,open_clip:ViT-B-32:random"
THUMB_GLOB = "geo/dataset/tiles/*/thumb/*/*.tar"
SATURATION_TARGET = 0.9
LATENCY_TARGET = 2.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- shared helpers


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def ensure_geo_tiles(data: Path, seed: int = 0) -> Path:
    """The synthetic geo dataset with 512-px tiles under `data`, synthesised once (about a minute)."""
    dataset = data / "geo" / "dataset"
    if (data / "geo" / "synth.json").is_file() and any(data.glob(THUMB_GLOB)):
        return dataset
    from marsbench.datasets.synth import synthesize

    print(f"synthesising 512-px geo tiles under {data} (once) ...", flush=True)
    synthesize(data, scale="small", seed=seed, tasks=["geo"], image_size=512)
    return dataset


def read_tiles(data: Path, limit: int | None = None) -> list[tuple[str, bytes]]:
    """(key, PNG bytes) of the tiles in the geo shards, in shard order."""
    from marsbench.datasets.tar_shards import iter_tar_samples

    tiles: list[tuple[str, bytes]] = []
    for shard in sorted(data.glob(THUMB_GLOB)):
        for sample in iter_tar_samples(shard, lambda issue: print("shard issue:", issue)):
            if "png" in sample.parts:
                tiles.append((sample.key, sample.parts["png"]))
                if limit is not None and len(tiles) >= limit:
                    return tiles
    return tiles


def machine_busy_seconds() -> float:
    """Core-seconds the whole machine has spent busy since boot (all processes, from /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thread_env(threads: int) -> dict[str, str]:
    # torch reads OMP_NUM_THREADS for its intra-op pool at start-up; MKL for completeness.
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


@dataclass
class ServiceProcess:
    """A service run as its own process (so that it never shares this process's GIL)."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, app: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
        port = free_port()
        log_path = log_dir / f"{name}.log"
        cmd = [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--log-level", "warning", "--no-access-log"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        return cls(name, f"http://127.0.0.1:{port}", proc, log_path)

    def wait_ready(self, path: str, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s} s")

    def cpu_seconds(self) -> float:
        """User + system CPU of the process, all its threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_encoder(
    name: str, model: str, threads: int, log_dir: Path, extra: dict[str, str] | None = None
) -> ServiceProcess:
    env = {
        "MARSBENCH_ENCODER_DEVICE": "cpu",
        "MARSBENCH_ENCODER_PRELOAD": model,
        **thread_env(threads),
        **(extra or {}),
    }
    server = ServiceProcess.start(name, "marsbench.encoder.app:create_app", env, log_dir)
    server.wait_ready("/readyz")
    return server


@dataclass
class LoadResult:
    images: int
    seconds: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def http_load(
    urls: Sequence[str], model: str, blobs: Sequence[bytes], request_size: int, clients: int
) -> LoadResult:
    """Send `blobs` in requests of `request_size` from `clients` threads; images/s over the whole run.

    Each thread has its own client (own keep-alive connection), pinned to one URL round-robin over
    `urls`; requests are taken from one shared queue, so fast threads take more.
    """
    chunks = [list(blobs[i : i + request_size]) for i in range(0, len(blobs), request_size)]
    lock = threading.Lock()
    pending = iter(chunks)
    conns = [EncoderClient(urls[i % len(urls)], timeout=600) for i in range(clients)]

    def worker(client: EncoderClient) -> int:
        done = 0
        while True:
            with lock:
                chunk = next(pending, None)
            if chunk is None:
                return done
            rows = client.embed_images(model, chunk)
            if len(rows) != len(chunk):
                raise RuntimeError(f"{len(rows)} rows for {len(chunk)} images")
            done += len(rows)

    try:
        cpu0, start = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            done = sum(pool.map(worker, conns))
        seconds = time.perf_counter() - start
        return LoadResult(done, seconds, time.process_time() - cpu0)
    finally:
        for conn in conns:
            conn.close()


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt_spread(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


# ----------------------------------------------------------------------------- in-process model


class InProcessModel:
    """The model loaded here with the encoder's own adapter and decoder: what the server runs."""

    def __init__(self, ref: str) -> None:
        from marsbench.encoder.adapters import RuntimeOptions, load_model
        from marsbench.encoder.core.images import decode_image
        from marsbench.encoder.registry import registered_specs, resolve_model
        from marsbench.encoder.settings import EncoderSettings

        spec = resolve_model(ref, registered_specs([]))
        self.batch_size = spec.default_batch_size  # what the server batches up to
        self.model: Any = load_model(spec, RuntimeOptions(device="cpu"))
        self._decode = decode_image
        self._max_pixels = EncoderSettings().max_image_pixels

    def prepare(self, blob: bytes) -> Any:
        return self.model.preprocess_image(self._decode(blob, 0, max_pixels=self._max_pixels))

    def loop(self, blobs: Sequence[bytes]) -> LoadResult:
        """The plain loop: per batch, decode, preprocess, stack and forward."""
        cpu0, start = time.process_time(), time.perf_counter()
        for i in range(0, len(blobs), self.batch_size):
            rows = self.model.embed_prepared([self.prepare(b) for b in blobs[i : i + self.batch_size]])
            assert len(rows) == len(blobs[i : i + self.batch_size])
        return LoadResult(len(blobs), time.perf_counter() - start, time.process_time() - cpu0)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class ModelReport:
    model: str
    images: int
    batch_size: int
    rounds: list[dict[str, float]] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def bench_model(
    ref: str, tiles: list[bytes], images: int, args: argparse.Namespace, log_dir: Path
) -> ModelReport:
    print(f"\n== {ref}: loading in process and starting the encoder process(es) ...", flush=True)
    local = InProcessModel(ref)
    server = start_encoder("encoder", ref, args.threads, log_dir)
    nowait = start_encoder(
        "encoder-nowait", ref, args.threads, log_dir, {"MARSBENCH_ENCODER_MAX_WAIT_MS": "0"}
    )
    report = ModelReport(ref, images, local.batch_size)
    try:
        blobs = [tiles[i % len(tiles)] for i in range(images)]
        # Warm-up of both paths (first-call allocations, lazy batcher start, connection set-up).
        local.loop(blobs[: local.batch_size])
        http_load(
            [server.url], ref, blobs[: args.request_size * args.clients], args.request_size, args.clients
        )
        for r in range(args.repeats):
            order = ("local", "http") if r % 2 == 0 else ("http", "local")
            row: dict[str, float] = {"load1": load_average()[0]}
            for cond in order:
                if cond == "local":
                    res = local.loop(blobs)
                    row |= {"local_rate": res.rate, "local_cpu_ms_per_image": 1e3 * res.client_cpu_s / images}
                else:
                    cpu0 = server.cpu_seconds()
                    res = http_load([server.url], ref, blobs, args.request_size, args.clients)
                    row |= {
                        "http_rate": res.rate,
                        "server_cpu_ms_per_image": 1e3 * (server.cpu_seconds() - cpu0) / images,
                        "client_cpu_ms_per_image": 1e3 * res.client_cpu_s / images,
                    }
            row["ratio"] = row["http_rate"] / row["local_rate"]
            report.rounds.append(row)
            print(
                f"  repeat {r + 1}: in-process {row['local_rate']:.1f} img/s, HTTP {row['http_rate']:.1f} "
                f"img/s, ratio {row['ratio']:.3f} (load {row['load1']:.2f})",
                flush=True,
            )
        report.latency = bench_latency(
            local, server, nowait, ref, tiles, args.latency_repeats, args.latency_idle_s
        )
    finally:
        server.stop()
        nowait.stop()
    ratios = [row["ratio"] for row in report.rounds]
    lat = report.latency
    report.summary = {
        "local_rate": spread([row["local_rate"] for row in report.rounds]),
        "http_rate": spread([row["http_rate"] for row in report.rounds]),
        "ratio": spread(ratios),
        "saturation_met": statistics.median(ratios) >= SATURATION_TARGET,
        "latency_ratio": lat["ratio_http_to_forward"],
        "latency_met": lat["ratio_http_to_forward"]["median"] < LATENCY_TARGET,
        **{k: spread([row[k] for row in report.rounds]) for k in _CPU_KEYS},
    }
    return report


_CPU_KEYS = ("local_cpu_ms_per_image", "server_cpu_ms_per_image", "client_cpu_ms_per_image")


def bench_latency(
    local: InProcessModel,
    server: ServiceProcess,
    nowait: ServiceProcess,
    ref: str,
    tiles: list[bytes],
    repeats: int,
    idle_s: float,
) -> dict[str, Any]:
    """Interleaved: forward of one prepared item, decode+preprocess+forward, and 1-image requests."""
    samples: dict[str, list[float]] = {"forward": [], "local_full": [], "http": [], "http_nowait": []}
    with EncoderClient(server.url) as client, EncoderClient(nowait.url) as client0:
        for i in range(repeats + 2):  # the first two are warm-up
            blob = tiles[i % len(tiles)]
            prepared = local.prepare(blob)
            calls: dict[str, Callable[[], object]] = {
                "forward": lambda p=prepared: local.model.embed_prepared([p]),
                "local_full": lambda b=blob: local.model.embed_prepared([local.prepare(b)]),
                "http": lambda b=blob: client.embed_images(ref, [b]),
                "http_nowait": lambda b=blob: client0.embed_images(ref, [b]),
            }
            row = {}
            for key, call in calls.items():
                # Idle first: OpenMP threads of the previous call (here or in a server) keep spinning
                # for a while after it (up to KMP_BLOCKTIME/GOMP_SPINCOUNT), stealing the next one's
                # cores; each measurement should start from a quiet machine, as a lone request does.
                time.sleep(idle_s)
                row[key] = timed(call)
            if i >= 2:
                for key, value in row.items():
                    samples[key].append(value * 1e3)
    out: dict[str, Any] = {key: spread(values) for key, values in samples.items()}
    pairs = zip(samples["http"], samples["forward"], strict=True)
    out["ratio_http_to_forward"] = spread([h / f for h, f in pairs])
    out["ratio_http_to_local_full"] = spread(
        [h / f for h, f in zip(samples["http"], samples["local_full"], strict=True)]
    )
    out["ratio_http_nowait_to_forward"] = spread(
        [h / f for h, f in zip(samples["http_nowait"], samples["forward"], strict=True)]
    )
    out["repeats"] = repeats
    out["idle_s"] = idle_s
    return out


def print_table(reports: list[ModelReport], args: argparse.Namespace) -> None:
    print(
        f"\nSaturation ({args.clients} clients x {args.request_size} images/request, {args.repeats} repeats;"
    )
    print("median [min-max] over repeats; ratio = HTTP / in-process, per repeat)")
    print(f"{'model':<22} {'in-process img/s':>20} {'HTTP img/s':>20} {'ratio':>20} {'>= 0.9':>7}")
    for rep in reports:
        s = rep.summary
        print(
            f"{rep.model:<22} {fmt_spread(s['local_rate'], 1):>20} {fmt_spread(s['http_rate'], 1):>20} "
            f"{fmt_spread(s['ratio'], 3):>20} {'yes' if s['saturation_met'] else 'NO':>7}"
        )
    print("\nCPU ms per image (median): in-process loop | server process | load-generator process")
    for rep in reports:
        s = rep.summary
        print(
            f"{rep.model:<22} {s['local_cpu_ms_per_image']['median']:8.1f} | "
            f"{s['server_cpu_ms_per_image']['median']:8.1f} | {s['client_cpu_ms_per_image']['median']:8.1f}"
        )
    print("\nLow load, one 1-image request at a time (ms, median [min-max]; ratio per pair)")
    head = ("forward", "dec+prep+fwd", "HTTP", "HTTP wait=0", "HTTP/forward", "< 2")
    print(f"{'model':<22} " + " ".join(f"{h:>18}" for h in head))
    for rep in reports:
        lat = rep.latency
        cells = [
            fmt_spread(lat["forward"], 1),
            fmt_spread(lat["local_full"], 1),
            fmt_spread(lat["http"], 1),
            fmt_spread(lat["http_nowait"], 1),
            fmt_spread(lat["ratio_http_to_forward"], 2),
            "yes" if rep.summary["latency_met"] else "NO",
        ]
        print(f"{rep.model:<22} " + " ".join(f"{c:>18}" for c in cells))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model references")
    parser.add_argument(
        "--images",
        default="768,96",
        help="images per condition per repeat, one per model (comma-separated) or one for all",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients at saturation")
    parser.add_argument("--request-size", type=int, default=16, help="images per HTTP request")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, here and in the server")
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument(
        "--latency-idle-s", type=float, default=0.3, help="pause before each low-load measurement"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="synthetic data folder (reused)")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    counts = [int(n) for n in args.images.split(",")]
    counts = counts * len(models) if len(counts) == 1 else counts
    torch.set_num_threads(args.threads)
    started = load_average()
    ensure_geo_tiles(args.data)
    tiles = [blob for _, blob in read_tiles(args.data, limit=max(counts))]
    print(
        f"{len(tiles)} tiles of {statistics.mean(map(len, tiles)) / 1024:.0f} KiB mean; torch threads "
        f"{torch.get_num_threads()} here and OMP_NUM_THREADS={args.threads} in the server; "
        f"load average {started}",
        flush=True,
    )
    reports = []
    with tempfile.TemporaryDirectory(prefix="marsbench-encoder-bench-") as tmp:
        for model, images in zip(models, counts, strict=True):
            reports.append(bench_model(model, tiles, images, args, Path(tmp)))
    ended = load_average()
    print_table(reports, args)
    print(f"\nload average (1/5/15 min): start {started}, end {ended}")
    if args.json:
        out = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_average": {"start": started, "end": ended},
            "models": [vars(rep) for rep in reports],
        }
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
