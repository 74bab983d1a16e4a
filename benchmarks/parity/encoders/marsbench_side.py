"""marsbench's side of an encoder cross-check: its adapters, through the engine or the HTTP service.

Run by the runner in marsbench's own environment, one process per case (so that each case sees only
its own registry file):

    python -m benchmarks.parity.encoders.marsbench_side --registry REG.toml --model NAME \
        --inputs INPUTS_DIR --out OUT.npz [--http] [--modalities image,text] [--import MODULE]

The registry file holds `[models.NAME]` with the case's fields, completing the built-in entry. The
image files' bytes and the texts go in as users send them: one request per modality holding every
item, on the CPU in fp32, with each model's own ('pil') preprocessing. `--http` serves the engine
with uvicorn on 127.0.0.1 (a free port) and calls `POST /v1/embeddings` instead of the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.parity.encoders.inputs import image_files, texts


def toml_value(value: Any) -> str:
    """A TOML literal for the registry's field types (str, bool, int, float, list, inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")


def write_registry(path: Path, model: str, fields: Mapping[str, Any]) -> Path:
    lines = [f"[models.{json.dumps(model)}]"] + [f"{key} = {toml_value(v)}" for key, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def card_meta(card: Mapping[str, Any]) -> dict[str, str]:
    """What the encoder's model card says ran: the preprocessing (processor class and backend, or
    open_clip's transforms), the registry's backend, the device and the precision."""
    return {
        "image_processor": str(card.get("preprocessing")),
        "image_backend": str(card.get("image_backend") or "(family's own transforms)"),
        "device": str(card.get("device")),
        "precision": str(card.get("precision")),
    }


async def _embed_engine(
    settings: Any, model: str, blobs: list[bytes], prompts: list[str], modalities: list[str]
) -> dict[str, Any]:
    from marsbench.encoder.core.engine import EncoderEngine

    out: dict[str, Any] = {}
    async with EncoderEngine(settings) as engine:
        if "image" in modalities:
            out["image"] = await engine.embed_images(model, blobs)
        if "text" in modalities:
            out["text"], _ = await engine.embed_texts(model, prompts)
        out["meta"] = card_meta((await engine.describe(model)).model_dump())
    return out


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _embed_http(
    settings: Any, model: str, blobs: list[bytes], prompts: list[str], modalities: list[str]
) -> dict[str, Any]:
    """The same calls through a real uvicorn server on loopback, as a client sends them."""
    import httpx
    import uvicorn

    from marsbench.encoder.app import create_app
    from marsbench.schemas.datauri import encode_data_uri

    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the encoder server did not start")
            time.sleep(0.05)
        out: dict[str, Any] = {}
        with httpx.Client(base_url=base, timeout=600) as client:
            requests = {
                "image": {"input": [encode_data_uri(b) for b in blobs], "modality": "image"},
                "text": {"input": prompts, "modality": "text"},
            }
            for modality in modalities:
                response = client.post("/v1/embeddings", json={"model": model, **requests[modality]})
                if response.status_code != 200:
                    raise RuntimeError(
                        f"POST /v1/embeddings ({modality}): {response.status_code} {response.text[:300]}"
                    )
                rows = sorted(response.json()["data"], key=lambda row: row["index"])
                out[modality] = np.array([row["embedding"] for row in rows], dtype=np.float32)
            card = client.get(f"/v1/models/{model}").json()
        out["meta"] = card_meta(card) | {"served_by": base}
        return out
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def run(
    registry: Path,
    model: str,
    inputs: Path,
    modalities: list[str],
    *,
    http: bool,
    encoder: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    import transformers

    from marsbench.encoder.settings import EncoderSettings

    os.environ["MARSBENCH_ENCODER_REGISTRY"] = str(registry)
    settings = EncoderSettings(
        device="cpu",
        registry=[str(registry)],
        image_preprocessing="pil",
        max_wait_ms=1,
        max_batch_size=64,
        **dict(encoder or {}),
    )
    blobs = [path.read_bytes() for path in image_files(inputs)]
    prompts = texts(inputs)
    if http:
        out = _embed_http(settings, model, blobs, prompts, modalities)
    else:
        out = asyncio.run(_embed_engine(settings, model, blobs, prompts, modalities))
    out["meta"] |= {"transformers": transformers.__version__, "via": "http" if http else "engine"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modalities", default="image,text")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        help="module to import first (e.g. one registering tiny timm towers)")  # fmt: skip
    parser.add_argument("--setting", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                        help="an encoder setting, e.g. cpu_precision=reference")  # fmt: skip
    args = parser.parse_args(argv)
    encoder = dict(item.split("=", 1) for item in args.settings)
    for module in args.imports:
        importlib.import_module(module)
    out = run(
        args.registry, args.model, args.inputs, args.modalities.split(","), http=args.http, encoder=encoder
    )
    arrays = {k: np.asarray(out[k], dtype=np.float32) for k in ("image", "text") if k in out}
    np.savez(args.out, meta=json.dumps(out["meta"]), **arrays)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
