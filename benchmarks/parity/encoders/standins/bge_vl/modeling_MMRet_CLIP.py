"""STAND-IN for BAAI/BGE-VL-large's hub remote code `modeling_MMRet_CLIP.py` (no public copy was
found from this workspace). Written for the parity check, not copied: it keeps only what the
reference's models/bgevl.py calls, with the semantics docs/models.md records for the published
file (a copy of transformers' CLIPModel whose image/text encoders are get_image_features /
get_text_features followed by L2 normalisation; `set_processor` loads the repo's CLIPProcessor;
`encode(images=...)` opens each path or file object as RGB and runs that processor).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import CLIPModel as _CLIPModel
from transformers import CLIPProcessor


class CLIPModel(_CLIPModel):
    def set_processor(self, model_name: str) -> None:
        self.processor = CLIPProcessor.from_pretrained(model_name)

    def encode_image(self, images: Any) -> torch.Tensor:
        features = self.get_image_features(**images)
        return torch.nn.functional.normalize(features, dim=-1)

    def encode_text(self, text: Any) -> torch.Tensor:
        features = self.get_text_features(**text)
        return torch.nn.functional.normalize(features, dim=-1)

    def encode(self, images: Any = None, text: Any = None) -> torch.Tensor:
        if images is not None:
            pictures = [Image.open(item).convert("RGB") for item in images]
            inputs = self.processor(images=pictures, return_tensors="pt").to(self.device)
            return self.encode_image(inputs)
        inputs = self.processor(text=text, return_tensors="pt", padding=True).to(self.device)
        return self.encode_text(inputs)
