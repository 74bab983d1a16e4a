"""GPU throughput: raw bf16 forward of ViT-L-14 (224 px) and SigLIP2 ViT-L-16 (512 px) image towers,
as a fraction of the chip's measured bf16 matrix throughput, and the encoder service's throughput
on the same card.

Weights are random (the device machine cannot download; throughput does not depend on them). The
model FLOPs come from torch's FlopCounterMode on one forward, not from a table. Each phase is
bounded in time, so that the whole script stays within its budget (`benchmarks/gpu_check.sh`).

    .venv/bin/python benchmarks/gpu_throughput.py --json $OUT/gpu.json
    .venv/bin/python benchmarks/gpu_throughput.py --device cpu --quick   # a smoke run anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

MODELS = {"ViT-L-14 @224": "ViT-L-14", "SigLIP2 ViT-L-16 @512": "ViT-L-16-SigLIP2-512"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, size: int, seconds: float) -> float:
    """The chip's achievable dense bf16 matrix throughput: square matmuls, best of several timings."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sync(device)
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = max(best, 10 * 2 * size**3 / (time.perf_counter() - started) / 1e12)
    return best


def forward_flops(model: Any, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.encode_image(torch.zeros(1, 3, size, size, device=device))
    return float(counter.get_total_flops())


def raw_throughput(arch: str, device: torch.device, batch: int, seconds: float) -> dict[str, float]:
    import open_clip

    model = open_clip.create_model(arch, device=device).eval()
    size = int(
        model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    )
    flops = forward_flops(model, size, device)
    pixels = torch.randn(batch, 3, size, size, device=device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    rates = []
    with torch.inference_mode(), autocast:
        model.encode_image(pixels)  # warm-up (kernels, autotuning)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(rates) < 3:
            sync(device)
            started = time.perf_counter()
            model.encode_image(pixels)
            sync(device)
            rates.append(batch / (time.perf_counter() - started))
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rate = statistics.median(rates)
    return {
        "image_size": size,
        "gflops_per_image": flops / 1e9,
        "images_per_s": rate,
        "tflops": rate * flops / 1e12,
    }


def service_throughput(
    arch: str, device: str, clients: int, batch: int, seconds: float, port: int
) -> dict[str, Any]:
    """Images/s through the encoder's binary endpoint, the encoder in its own process."""
    from marsbench.client import EncoderClient
    from marsbench.datasets.synth import relief_png_tiles

    env = os.environ | {
        "MARSBENCH_ENCODER_DEVICE": device,
        "MARSBENCH_ENCODER_PRELOAD": f"open_clip:{arch}:random",
        "MARSBENCH_ENCODER_PREPROCESS_WORKERS": str(os.cpu_count() or 4),
        "MARSBENCH_ENCODER_IMAGE_PREPROCESSING": "tensor",
        "MARSBENCH_ENCODER_MAX_BATCH_SIZE": str(batch),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "marsbench.encoder.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with EncoderClient(url, timeout=600) as probe:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if probe.request("GET", "/readyz").status_code == 200:
                        break
                except Exception:  # not listening yet
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the encoder did not become ready")
                time.sleep(1)
        tiles = relief_png_tiles(batch)
        done = [0] * clients
        stop = time.monotonic() + seconds

        def drive(index: int) -> None:
            with EncoderClient(url, timeout=600) as client:
                client.embed_images(f"open_clip:{arch}:random", tiles[:4])  # warm
                while time.monotonic() < stop:
                    client.embed_images(f"open_clip:{arch}:random", tiles)
                    done[index] += len(tiles)

        started = time.monotonic()
        threads = [threading.Thread(target=drive, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"images_per_s": sum(done) / (time.monotonic() - started), "clients": clients, "batch": batch}
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="Tiny budgets, for a smoke run.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Timing budget per phase.")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--arch", action="append", help="Other open_clip architectures (smoke runs).")
    parser.add_argument("--json")
    args = parser.parse_args()
    models = {arch: arch for arch in args.arch} if args.arch else MODELS
    device = torch.device(args.device)
    seconds = 2.0 if args.quick else args.seconds
    batch = 4 if args.quick else args.batch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = matmul_tflops(device, 1024 if args.quick else 8192, seconds)
    results: dict[str, Any] = {"device": name, "matmul_tflops": peak, "models": {}}
    kind = "bf16" if device.type == "cuda" else "fp32"
    print(f"device: {name}; measured dense {kind} matmul: {peak:.1f} TFLOP/s")
    columns = ("model", "GFLOP/img", "img/s raw", "TFLOP/s", "of peak", "img/s service", "service/raw")
    print("{:<24} {:>10} {:>10} {:>8} {:>8} {:>14} {:>12}".format(*columns))
    for label, arch in models.items():
        raw = raw_throughput(arch, device, batch, seconds)
        served = service_throughput(
            arch, args.device, 2 if args.quick else args.clients, batch, seconds, args.port
        )
        raw["fraction_of_peak"] = raw["tflops"] / peak
        raw["service"] = served
        results["models"][label] = raw
        ratio = served["images_per_s"] / raw["images_per_s"]
        print(
            f"{label:<24} {raw['gflops_per_image']:10.1f} {raw['images_per_s']:10.0f} {raw['tflops']:8.1f} "
            f"{raw['fraction_of_peak']:8.1%} {served['images_per_s']:14.0f} {ratio:12.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
