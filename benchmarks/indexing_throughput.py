"""Indexing throughput end to end (shards -> encoder -> embedded Qdrant) against the encoder alone.

    python benchmarks/indexing_throughput.py [--json PATH]

Every service runs as its own process, as in a distributed deployment: the encoder(s) under uvicorn
(`marsbench.encoder.app:create_app`, CPU), and for each indexing run a fresh indexer process
(`marsbench.indexer.app:create_app`) with its own empty data folder, i.e. its own embedded Qdrant
store (the indexer has no API to drop a collection, and a second job on the same collection would
skip every stored point). Indexing is driven through the indexer's API: `POST /v1/jobs` for the
synthetic geo dataset (512-px PNG tiles in WebDataset shards), then polling the job. A run's time
is the job's own `updated_at - created_at` when it has succeeded: it includes counting the shards,
the model card request, reading the shards, encoding and the store's upserts, and excludes the
indexer's start-up.

Part A (--model, default marsbench-tiny, --threads torch threads): tiles/s of the indexing job
against the encoder's standalone throughput on the same tiles over HTTP (the binary path, requests
of the indexer's batch size from --clients concurrent clients). Target: >= 0.85.

Part B (--scale-model, default open_clip:ViT-B-32:random with random weights, a slow model here): two
encoder processes, each with 1 torch thread (OMP_NUM_THREADS=1), against one such encoder; the
indexer gets both URLs (MARSBENCH_ENCODER_URLS) or one. Target: 2-encoder / 1-encoder >= 1.7. The
encoders' own scaling over HTTP without the indexer is measured beside it.

Conditions are interleaved in every repeat (ABBA order) and reported as median [min-max].
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from encoder_overhead import (
    DEFAULT_DATA,
    ServiceProcess,
    ensure_geo_tiles,
    fmt_spread,
    http_load,
    load_average,
    machine_busy_seconds,
    read_tiles,
    spread,
    start_encoder,
)

from marsbench.client import IndexerClient
from marsbench.schemas.jobs import JobCreate, JobState, TaskName

E2E_TARGET = 0.85
SCALING_TARGET = 1.7


def make_subset(dataset: Path, dest: Path, tiles: list[tuple[str, bytes]]) -> Path:
    """A geo dataset folder holding only `tiles`, in one shard, beside the original catalogue."""
    out = dest / "dataset"
    for part in ("ground_truth", "image_queries"):
        shutil.copytree(dataset / part, out / part)
    shard = next(dataset.glob("tiles/*/thumb/*/*.tar"))
    target = out / shard.relative_to(dataset).parent / "000000.tar"
    target.parent.mkdir(parents=True)
    with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, blob in tiles:
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out


def index_once(
    encoder_urls: list[str], model: str, dataset: Path, batch_size: int, in_flight: int, work: Path
) -> dict[str, float]:
    """One indexing job in a fresh indexer process with an empty store; its time and tiles/s."""
    data_dir = Path(tempfile.mkdtemp(prefix="indexer-", dir=work))
    env = {
        "MARSBENCH_DATA_DIR": str(data_dir),
        "MARSBENCH_ENCODER_URLS": ",".join(encoder_urls),
        "MARSBENCH_INDEX_BATCH_SIZE": str(batch_size),
        "MARSBENCH_INDEX_IN_FLIGHT": str(in_flight),
        "MARSBENCH_RESUME_JOBS": "false",
    }
    indexer = ServiceProcess.start("indexer", "marsbench.indexer.app:create_app", env, work)
    try:
        indexer.wait_ready("/readyz")
        with IndexerClient(indexer.url) as client:
            job = client.create_job(
                JobCreate(task=TaskName.GEOLOCALIZATION, model=model, dataset_dir=str(dataset))
            )
            cpu0 = indexer.cpu_seconds()
            while job.state not in (JobState.SUCCEEDED, JobState.FAILED):
                time.sleep(0.1)
                job = client.job(job.id)
            cpu = indexer.cpu_seconds() - cpu0
    finally:
        indexer.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    if job.state is not JobState.SUCCEEDED:
        raise RuntimeError(f"indexing job failed: {job.error}")
    seconds = (job.updated_at - job.created_at).total_seconds()
    return {"tiles": job.done, "seconds": seconds, "rate": job.done / seconds, "indexer_cpu_s": cpu}


def part_a(args: argparse.Namespace, dataset: Path, work: Path) -> dict[str, Any]:
    tiles = read_tiles(dataset.parent.parent)
    blobs = [blob for _, blob in tiles]
    print(
        f"\n== A: {args.model}, {len(blobs)} tiles, torch threads {args.threads} in the encoder", flush=True
    )
    encoder = start_encoder("encoder-a", args.model, args.threads, work)
    rounds = []
    try:
        http_load([encoder.url], args.model, blobs[: args.batch_size * 2], args.batch_size, args.clients)
        for r in range(args.repeats):
            row: dict[str, float] = {"load1": load_average()[0]}
            for cond in ("encoder", "index") if r % 2 == 0 else ("index", "encoder"):
                if cond == "encoder":
                    cpu0 = encoder.cpu_seconds()
                    res = http_load([encoder.url], args.model, blobs, args.batch_size, args.clients)
                    row |= {"encoder_rate": res.rate, "encoder_cpu_s": encoder.cpu_seconds() - cpu0}
                else:
                    cpu0 = encoder.cpu_seconds()
                    run = index_once(
                        [encoder.url], args.model, dataset, args.batch_size, args.in_flight, work
                    )
                    row |= {
                        "index_rate": run["rate"],
                        "index_tiles": run["tiles"],
                        "index_encoder_cpu_s": encoder.cpu_seconds() - cpu0,
                        "indexer_cpu_s": run["indexer_cpu_s"],
                    }
            row["ratio"] = row["index_rate"] / row["encoder_rate"]
            rounds.append(row)
            print(
                f"  repeat {r + 1}: encoder alone {row['encoder_rate']:.1f} tiles/s, indexing "
                f"{row['index_rate']:.1f} tiles/s, ratio {row['ratio']:.3f} (load {row['load1']:.2f})",
                flush=True,
            )
    finally:
        encoder.stop()
    ratios = [row["ratio"] for row in rounds]
    return {
        "model": args.model,
        "tiles": len(blobs),
        "rounds": rounds,
        "encoder_rate": spread([row["encoder_rate"] for row in rounds]),
        "index_rate": spread([row["index_rate"] for row in rounds]),
        "ratio": spread(ratios),
        "met": statistics.median(ratios) >= E2E_TARGET,
    }


def part_b(args: argparse.Namespace, dataset: Path, work: Path) -> dict[str, Any]:
    tiles = read_tiles(dataset.parent.parent, limit=args.scale_tiles)
    subset = make_subset(dataset, work / "subset", tiles)
    blobs = [blob for _, blob in tiles]
    print(
        f"\n== B: {args.scale_model}, {len(blobs)} tiles, 1 torch thread per encoder, batch "
        f"{args.scale_batch_size}, {args.scale_in_flight} batches in flight",
        flush=True,
    )
    encoders = [start_encoder(f"encoder-b{i}", args.scale_model, 1, work) for i in range(2)]
    urls = [e.url for e in encoders]
    rounds = []
    try:
        for url in urls:  # warm-up of each replica
            http_load([url], args.scale_model, blobs[:4], 4, 1)
        for r in range(args.repeats):
            row: dict[str, float] = {"load1": load_average()[0]}
            order = ("one", "two") if r % 2 == 0 else ("two", "one")
            for what in ("index", "encoder"):
                for cond in order if what == "index" else tuple(reversed(order)):
                    use = urls[:1] if cond == "one" else urls
                    ours0 = sum(e.cpu_seconds() for e in encoders) + time.process_time()
                    busy0, wall0 = machine_busy_seconds(), time.perf_counter()
                    if what == "index":
                        run = index_once(
                            use, args.scale_model, subset, args.scale_batch_size, args.scale_in_flight, work
                        )
                        rate, ours = run["rate"], run["indexer_cpu_s"]
                    else:
                        res = http_load(use, args.scale_model, blobs, args.scale_batch_size, args.clients)
                        rate, ours = res.rate, 0.0
                    wall = time.perf_counter() - wall0
                    ours += sum(e.cpu_seconds() for e in encoders) + time.process_time() - ours0
                    row[f"{what}_{cond}"] = rate
                    # Cores the rest of the machine (other users) took meanwhile: what was left to us.
                    row[f"{what}_{cond}_other_cores"] = (machine_busy_seconds() - busy0 - ours) / wall
            row["index_scaling"] = row["index_two"] / row["index_one"]
            row["encoder_scaling"] = row["encoder_two"] / row["encoder_one"]
            rounds.append(row)
            print(
                f"  repeat {r + 1}: indexing {row['index_one']:.2f} -> {row['index_two']:.2f} tiles/s "
                f"(x{row['index_scaling']:.2f}); encoders alone {row['encoder_one']:.2f} -> "
                f"{row['encoder_two']:.2f} (x{row['encoder_scaling']:.2f}) (load {row['load1']:.2f}; "
                f"cores used by other processes during 1/2-encoder indexing: "
                f"{row['index_one_other_cores']:.2f}/{row['index_two_other_cores']:.2f})",
                flush=True,
            )
    finally:
        for encoder in encoders:
            encoder.stop()
    keys = ("index_one", "index_two", "index_scaling", "encoder_one", "encoder_two", "encoder_scaling")
    keys += tuple(f"{w}_{c}_other_cores" for w in ("index", "encoder") for c in ("one", "two"))
    out: dict[str, Any] = {"model": args.scale_model, "tiles": len(blobs), "rounds": rounds}
    out |= {key: spread([row[key] for row in rounds]) for key in keys}
    out["met"] = out["index_scaling"]["median"] >= SCALING_TARGET
    return out


def print_table(a: dict[str, Any] | None, b: dict[str, Any] | None, args: argparse.Namespace) -> None:
    if a is not None:
        print(f"\nA. End to end vs encoder alone ({a['model']}, {a['tiles']} tiles; median [min-max])")
        print(f"{'encoder alone tiles/s':>24} {'indexing tiles/s':>22} {'ratio':>22} {'>= 0.85':>8}")
        print(
            f"{fmt_spread(a['encoder_rate'], 1):>24} {fmt_spread(a['index_rate'], 1):>22} "
            f"{fmt_spread(a['ratio'], 3):>22} {'yes' if a['met'] else 'NO':>8}"
        )
    if b is not None:
        print(f"\nB. Two encoder replicas vs one ({b['model']}, 1 torch thread each, {b['tiles']} tiles)")
        print(f"{'':<14} {'1 encoder':>20} {'2 encoders':>20} {'scaling':>20} {'>= 1.7':>7}")
        for what in ("index", "encoder"):
            label = "indexing" if what == "index" else "encoders alone"
            met = ("yes" if b["met"] else "NO") if what == "index" else ""
            print(
                f"{label:<14} {fmt_spread(b[f'{what}_one'], 2):>20} {fmt_spread(b[f'{what}_two'], 2):>20} "
                f"{fmt_spread(b[f'{what}_scaling'], 2):>20} {met:>7}"
            )
        print(
            "cores taken by other processes (median, 1 / 2 encoders): indexing "
            f"{b['index_one_other_cores']['median']:.2f} / {b['index_two_other_cores']['median']:.2f}, "
            f"encoders alone {b['encoder_one_other_cores']['median']:.2f} / "
            f"{b['encoder_two_other_cores']['median']:.2f}"
        )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="a,b", help="which parts to run: a, b or a,b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="synthetic data folder (reused)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the encoder alone")
    parser.add_argument("--model", default="marsbench-tiny", help="part A model")
    parser.add_argument("--threads", type=int, default=2, help="part A: the encoder's torch threads")
    parser.add_argument("--batch-size", type=int, default=64, help="part A: images per encoder request")
    parser.add_argument("--in-flight", type=int, default=3, help="part A: indexer batches in flight")
    parser.add_argument("--scale-model", default="open_clip:ViT-B-32:random", help="part B model")
    parser.add_argument("--scale-tiles", type=int, default=192, help="part B: tiles indexed per run")
    parser.add_argument("--scale-batch-size", type=int, default=16, help="part B: images per request")
    parser.add_argument("--scale-in-flight", type=int, default=4, help="part B: indexer batches in flight")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    started = load_average()
    dataset = ensure_geo_tiles(args.data)
    print(f"load average at start {started}", flush=True)
    with tempfile.TemporaryDirectory(prefix="marsbench-index-bench-") as tmp:
        a = part_a(args, dataset, Path(tmp)) if "a" in parts else None
        b = part_b(args, dataset, Path(tmp)) if "b" in parts else None
    ended = load_average()
    print_table(a, b, args)
    print(f"\nload average (1/5/15 min): start {started}, end {ended}")
    if args.json:
        out = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "load_average": {"start": started, "end": ended},
            "end_to_end": a,
            "scaling": b,
        }
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
