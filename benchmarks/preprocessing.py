"""Where image preprocessing costs, and what the tensor path saves.

Decoding and resizing 512-px PNG tiles is the encoder's CPU work per image. This measures, per tile
and side by side in one run (interleaved rounds, medians), for a model's own PIL preprocessing and
for the tensor path (`MARSBENCH_ENCODER_IMAGE_PREPROCESSING=tensor`):

- decode only (PIL), decode + preprocess on one thread, and the speedup of a thread pool;
- the model's forward time per image at its batch size on this device, so that the number of
  cores preprocessing needs to keep the model busy can be read off;
- the largest cosine change of the final vectors between the two paths.

    .venv/bin/python benchmarks/preprocessing.py --model open_clip:ViT-B-32:random --json /tmp/prep.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marsbench.datasets.synth import relief_png_tiles
from marsbench.encoder.adapters import RuntimeOptions, load_model
from marsbench.encoder.core.images import decode_image, decode_tensor
from marsbench.encoder.registry import resolve_model

LIMIT = 64_000_000


def per_item_ms(fn: Callable[[bytes], Any], blobs: list[bytes], threads: int) -> float:
    started = time.perf_counter()
    if threads == 1:
        for blob in blobs:
            fn(blob)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, blobs))
    return 1000 * (time.perf_counter() - started) / len(blobs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="open_clip:ViT-B-32:random", help="Model reference (open_clip family)."
    )
    parser.add_argument("--tiles", type=int, default=48)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch", type=int, default=32, help="Batch size of the forward-time measurement.")
    parser.add_argument("--json", help="Write the results here.")
    args = parser.parse_args()

    model = load_model(resolve_model(args.model), RuntimeOptions(device="auto"))
    if not model.tensor_preprocessing:
        raise SystemExit(f"{args.model} has no tensor preprocessing to compare")
    blobs = relief_png_tiles(args.tiles, args.size)

    def decode(blob: bytes) -> Any:
        return decode_image(blob, 0, max_pixels=LIMIT)

    def pil(blob: bytes) -> Any:
        return model.preprocess_image(decode_image(blob, 0, max_pixels=LIMIT))

    def tensor(blob: bytes) -> Any:
        return model.preprocess_tensor(decode_tensor(blob, 0, max_pixels=LIMIT))

    conditions = {
        "decode": (decode, 1),
        "pil, 1 thread": (pil, 1),
        "tensor, 1 thread": (tensor, 1),
        f"pil, {args.threads} threads": (pil, args.threads),
        f"tensor, {args.threads} threads": (tensor, args.threads),
    }
    samples: dict[str, list[float]] = {name: [] for name in conditions}
    # Preprocessing runs on pool threads, one item each: torch ops inside it run single-threaded,
    # as in the encoder (intra-op threads on 224-px tensors cost more than they save).
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for _ in range(args.rounds):  # interleaved, so that load changes hit every condition alike
        for name, (fn, threads) in conditions.items():
            samples[name].append(per_item_ms(fn, blobs, threads))
    torch.set_num_threads(torch_threads)

    batch = torch.stack([pil(blob) for blob in (blobs * (1 + args.batch // len(blobs)))[: args.batch]])
    model.embed_prepared(list(batch[:2]))  # warm-up
    forward = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        model.embed_prepared(list(batch))
        forward.append(1000 * (time.perf_counter() - started) / args.batch)

    exact = model.embed_prepared([pil(blob) for blob in blobs])
    fast = model.embed_prepared([tensor(blob) for blob in blobs])
    cosine_change = float((1 - (exact * fast).sum(axis=1)).max())

    medians = {name: statistics.median(values) for name, values in samples.items()}
    forward_ms = statistics.median(forward)
    mean_kb = np.mean([len(b) for b in blobs]) / 1024
    print(
        f"model {args.model}, {args.tiles} PNG tiles of {args.size} px (mean {mean_kb:.0f} KB), "
        f"{args.rounds} interleaved rounds"
    )
    print(f"{'condition':<24} {'ms/tile':>8} {'min':>7} {'max':>7}")
    for name, values in samples.items():
        print(f"{name:<24} {medians[name]:8.2f} {min(values):7.2f} {max(values):7.2f}")
    print(f"{'forward (batch ' + str(args.batch) + ')':<24} {forward_ms:8.2f}")
    single_ratio = medians["pil, 1 thread"] / medians["tensor, 1 thread"]
    print(f"tensor path is {single_ratio:.2f}x cheaper per tile on one thread")
    for path in ("pil", "tensor"):
        cores = medians[f"{path}, 1 thread"] / forward_ms
        print(f"{path}: {cores:.1f} cores of preprocessing keep this device's forward busy")
    print(f"largest cosine change of the vectors, pil vs tensor: {cosine_change:.2e}")
    if args.json:
        with Path(args.json).open("w") as out:
            json.dump(
                {
                    "model": args.model,
                    "device": str(RuntimeOptions().torch_device()),
                    "tiles": args.tiles,
                    "size": args.size,
                    "samples_ms": samples,
                    "median_ms": medians,
                    "forward_ms_per_image": forward_ms,
                    "tensor_speedup_one_thread": single_ratio,
                    "max_cosine_change": cosine_change,
                    "load_average": os.getloadavg(),
                },
                out,
                indent=2,
            )


if __name__ == "__main__":
    main()
