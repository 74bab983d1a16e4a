"""A model's transformers image processor on the backend its registry entry names, and its description.

transformers 5 loads every image processor with its torchvision backend unless told otherwise. The
reference's transformers (4.57.3; 4.51.3 for GME) loads a processor saved under a slow class name
(`CLIPImageProcessor`, `LlavaNextImageProcessor`, ...) as the slow PIL class, except Qwen2-VL's,
which 4.57 forces onto torchvision. The two backends resize with different kernels and round
differently: pixels move by one to four grey levels, vectors by up to 1e-3. The registry's
`image_backend` says which one a model runs (docs/models.md gives each model's evidence).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marsbench.encoder.registry import ModelSpec

_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def load_image_processor(folder: Path, spec: ModelSpec) -> Any:
    """The folder's image processor (`preprocessor_config.json`) on the spec's backend."""
    from transformers import AutoImageProcessor

    if spec.image_backend is None:  # transformers' own default (torchvision)
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    return AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend=spec.image_backend)


def on_backend(processor: Any, folder: Path, spec: ModelSpec) -> Any:
    """A multimodal processor whose image part runs the spec's backend.

    The backend cannot be passed to `AutoProcessor` itself: it would also go to the video
    processor, which has no PIL backend. The image processor is replaced instead, read from the
    same files, so every setting but the backend stays as published.
    """
    if spec.image_backend is not None and backend_of(processor.image_processor) != spec.image_backend:
        processor.image_processor = load_image_processor(folder, spec)
    return processor


def backend_of(image_processor: Any) -> str:
    # transformers 5 names its PIL classes `...ImageProcessorPil`; the rest run on torchvision.
    return "pil" if type(image_processor).__name__.endswith("Pil") else "torchvision"


def _value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict):  # transformers 5's SizeDict
        return {k: v for k, v in fields.items() if v is not None}
    return value


def _listed(value: Any) -> Any:
    return list(value) if value is not None else None


def describe_image_processor(image_processor: Any) -> str:
    """What turns a decoded image into pixels, for model cards and run records: the class, its
    backend, and the settings that decide the pixels."""
    parts = [f"transformers {type(image_processor).__name__} ({backend_of(image_processor)} backend)"]
    resample = getattr(image_processor, "resample", None)
    if getattr(image_processor, "do_resize", True):
        size = _value(getattr(image_processor, "size", None))
        name = _RESAMPLE.get(int(resample), str(resample)) if resample is not None else "default"
        parts.append(f"resize {size} {name}")
    if getattr(image_processor, "do_center_crop", False):
        parts.append(f"center crop {_value(getattr(image_processor, 'crop_size', None))}")
    if getattr(image_processor, "do_rescale", True):
        parts.append(f"rescale {getattr(image_processor, 'rescale_factor', None)}")
    if getattr(image_processor, "do_normalize", True):
        mean = getattr(image_processor, "image_mean", None)
        std = getattr(image_processor, "image_std", None)
        parts.append(f"normalize mean {_listed(mean)} std {_listed(std)}")
    return ", ".join(parts)


def describe_transforms(transforms: Any, *, path: str) -> str:
    """A torchvision pipeline (open_clip's preprocessing), one step after another."""
    steps = getattr(transforms, "transforms", [transforms])
    names = [getattr(t, "__name__", None) or " ".join(repr(t).split()) for t in steps]
    return f"{path}: " + ", ".join(names)
