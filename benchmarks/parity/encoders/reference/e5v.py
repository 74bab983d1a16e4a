"""Reference side of the E5-V cross-check: MarsRetrieval's own `build_e5v_components`,
`E5VImageEncoder` and `E5VTextEncoder`, on the CPU in fp32, one batch per modality.

    python reference/e5v.py --case e5-v --reference /tmp/ref --third-party TP --model DIR \
        --inputs DIR --out OUT.npz

Images are opened as the reference's landform folder loader does (`Image.open`, converted to RGB
when not RGB), then handed to the encoder, whose `_prepare_images` converts again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import image_paths, load_rgb, parse_args, save, texts


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    import torch
    from models.e5v import build_e5v_components  # type: ignore[import-not-found]
    from models.image_encoder.e5v_image_encoder import E5VImageEncoder  # type: ignore[import-not-found]
    from models.text_encoder.e5v_text_encoder import E5VTextEncoder  # type: ignore[import-not-found]

    torch.manual_seed(0)
    device = torch.device("cpu")
    components = build_e5v_components(SimpleNamespace(model=args.model), device)
    image_encoder = E5VImageEncoder(components)
    text_encoder = E5VTextEncoder(components)
    image = image_encoder.encode_image([load_rgb(path) for path in image_paths(args.inputs)])
    text = text_encoder.encode_text(texts(args.inputs))
    processor = components.processor
    meta = {
        "case": args.case,
        "image_processor": type(processor.image_processor).__name__,
        "tokenizer": type(processor.tokenizer).__name__,
        "padding_side": processor.tokenizer.padding_side,
        "dtype": str(next(components.model.parameters()).dtype),
    }
    save(args.out, meta, image=image, text=text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
