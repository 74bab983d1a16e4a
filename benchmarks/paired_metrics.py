"""Time paired-retrieval ranks and metrics at benchmark scale (default 100k pairs).

    python benchmarks/paired_metrics.py --pairs 100000 --dim 512

Ranks are counted in blocks of queries against the whole gallery (float32 matmul), never with
an N x N matrix in memory or a Python loop over it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from marsbench.evaluator.metrics.paired import paired_metrics


def random_pairs(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, dim)).astype(np.float32)
    texts = images + rng.normal(scale=4.0, size=(n, dim)).astype(np.float32)
    for array in (images, texts):
        array /= np.linalg.norm(array, axis=1, keepdims=True)
    return images, texts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, texts = random_pairs(args.pairs, args.dim, args.seed)
    start = time.perf_counter()
    metrics = paired_metrics(images, texts)
    elapsed = time.perf_counter() - start
    flops = 2 * args.pairs * args.pairs * args.dim
    print(f"{args.pairs:,} pairs x {args.dim} dims: {elapsed:.1f} s ({flops / elapsed / 1e9:.1f} GFLOP/s)")
    print({k: round(v, 4) for k, v in metrics.as_dict().items()})


if __name__ == "__main__":
    main()
