"""Reference side of the jina-embeddings-v4 cross-check: MarsRetrieval's own `build_jina_components`,
`JinaImageEncoder` and `JinaTextEncoder`, on the CPU in fp32 (the dtype `build_jina_components`
picks off CUDA), the model loaded by `AutoModel.from_pretrained(..., trust_remote_code=True)` from
the tiny folder, which carries the remote-code files (copied there by the case's build).

    python reference/jina_v4.py --case jina-embeddings-v4 --reference /tmp/ref --third-party TP \
        --model DIR --inputs DIR --out OUT.npz

The remote code's `_process_batches` wraps every forward in
`torch.autocast(device_type=<device>, dtype=torch.bfloat16)`, the CPU included. Case
`jina-embeddings-v4` runs it so; case `jina-v4-no-autocast` disables CPU autocast in this process
(a stand-in, said in the case's notes) so that the rest of the path is compared in fp32.

Images are handed over as PIL images, opened as the reference's landform folder loader does.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import image_paths, load_rgb, parse_args, save, texts

NO_AUTOCAST_CASES = {"jina-v4-no-autocast"}


def disable_cpu_autocast() -> None:
    """`torch.autocast(device_type="cpu", ...)` becomes a disabled context; CUDA is untouched."""
    import torch

    real = torch.autocast

    class CpuAutocastOff(real):  # type: ignore[misc, valid-type]
        def __init__(self, device_type: str, *args: object, **kwargs: object) -> None:
            if device_type == "cpu":
                kwargs["enabled"] = False
            super().__init__(device_type, *args, **kwargs)  # type: ignore[arg-type]

    torch.autocast = CpuAutocastOff  # type: ignore[misc]


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    import torch

    if args.case in NO_AUTOCAST_CASES:
        disable_cpu_autocast()
    from models.image_encoder.jina_image_encoder import JinaImageEncoder  # type: ignore[import-not-found]
    from models.jina import build_jina_components  # type: ignore[import-not-found]
    from models.text_encoder.jina_text_encoder import JinaTextEncoder  # type: ignore[import-not-found]

    torch.manual_seed(0)
    device = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        components = build_jina_components(SimpleNamespace(model=str(args.model)), device)
    for warning in caught:  # peft only warns when adapter tensors do not land on the model's modules
        if "adapter keys" in str(warning.message):
            raise SystemExit(f"the LoRA adapter did not load as it is: {str(warning.message)[:300]}")
    image_encoder = JinaImageEncoder(components)
    text_encoder = JinaTextEncoder(components)
    image = image_encoder.encode_image([load_rgb(p) for p in image_paths(args.inputs)])
    text = text_encoder.encode_text(texts(args.inputs))
    model = components.model
    processor = model.model.processor  # PeftModel -> JinaEmbeddingsV4Model
    meta = {
        "case": args.case,
        "image_processor": type(processor.image_processor).__name__,
        "tokenizer": type(processor.tokenizer).__name__,
        "padding_side": processor.tokenizer.padding_side,
        "model_class": type(model.model).__name__,
        "dtype": str(next(model.parameters()).dtype),
        "cpu_autocast": args.case not in NO_AUTOCAST_CASES,
        "text_max_length": getattr(processor, "text_max_length", None),
    }
    save(args.out, meta, image=image, text=text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
