"""Reference side of the Qwen3-VL-Embedding cross-check: MarsRetrieval's own
`build_qwen3_vl_embedding_components`, `Qwen3VLEmbeddingImageEncoder` and
`Qwen3VLEmbeddingTextEncoder`, on the CPU in fp32, one batch per modality.

    python reference/qwen3_vl.py --case qwen3-vl-embedding --reference /tmp/ref \
        --third-party TP --model DIR --inputs DIR --out OUT.npz

The reference's `models/qwen3_vl_embedding.py` runs `from scirpts import Qwen3VLEmbedder` with
`third_party/qwen3_vl_embedding/` on sys.path, where docs/INSTALL.md downloads the hub script
`qwen3_vl_embedding.py`; no module `scirpts` exists there (a typo). This script loads the fetched
embedder file (TP/qwen3_vl_embedding/src/models/qwen3_vl_embedding.py) and registers it under
that name before importing the reference module, so the reference's own code runs unchanged.

The image encoder sets `use_path_inputs`, so the reference's dataset hands it file paths, which
the embedder turns into `file://` URLs for qwen-vl-utils: paths are what is passed here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import image_paths, parse_args, save, texts

EMBEDDER = Path("qwen3_vl_embedding") / "src" / "models" / "qwen3_vl_embedding.py"


def register_embedder(third_party: Path) -> ModuleType:
    path = third_party / EMBEDDER
    if not path.is_file():
        raise SystemExit(f"{path} is missing: fetch the qwen3_vl_embedding source first")
    spec = importlib.util.spec_from_file_location("qwen3_vl_embedding", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["qwen3_vl_embedding"] = module
    spec.loader.exec_module(module)
    sys.modules["scirpts"] = module  # the name models/qwen3_vl_embedding.py imports
    return module


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    register_embedder(args.third_party)
    import torch
    from models.image_encoder.qwen3_vl_embedding_image_encoder import (  # type: ignore[import-not-found]
        Qwen3VLEmbeddingImageEncoder,
    )
    from models.qwen3_vl_embedding import (  # type: ignore[import-not-found]
        build_qwen3_vl_embedding_components,
    )
    from models.text_encoder.qwen3_vl_embedding_text_encoder import (  # type: ignore[import-not-found]
        Qwen3VLEmbeddingTextEncoder,
    )

    torch.manual_seed(0)
    device = torch.device("cpu")
    components = build_qwen3_vl_embedding_components(SimpleNamespace(model=args.model), device)
    embedder = components.model
    where = next(embedder.model.parameters()).device
    if where.type != "cpu":  # the embedder picks CUDA whenever it sees one
        raise SystemExit(f"the embedder chose {where}; run with CUDA_VISIBLE_DEVICES=''")
    image_encoder = Qwen3VLEmbeddingImageEncoder(components)
    text_encoder = Qwen3VLEmbeddingTextEncoder(components)
    paths = [str(path.resolve()) for path in image_paths(args.inputs)]
    image = image_encoder.encode_image(paths)
    text = text_encoder.encode_text(texts(args.inputs))
    processor = embedder.processor
    meta = {
        "case": args.case,
        "image_processor": type(processor.image_processor).__name__,
        "tokenizer": type(processor.tokenizer).__name__,
        "padding_side": processor.tokenizer.padding_side,
        "dtype": str(next(embedder.model.parameters()).dtype),
        "embedder": str(args.third_party / EMBEDDER),
    }
    save(args.out, meta, image=image, text=text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
