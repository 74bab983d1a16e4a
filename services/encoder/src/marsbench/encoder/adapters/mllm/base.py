"""What every MLLM embedder shares: loading a transformers multimodal model and its processor,
building prompts, running the decoder, pooling one hidden state per item, normalising.

A model is a subclass that states its facts (prompts, instructions, pooling, positions, padding
side, image resizing) and, where its published code differs from a plain forward pass, overrides
`hidden_states`. Images are prepared per item off the device thread (`preprocess_image` returns a
resized RGB image), then the processor builds the batch with the prompts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from PIL import Image

from marsbench.encoder.adapters.base import (
    DEFAULT_PROMPT,
    PromptOptions,
    RuntimeOptions,
    TorchEmbedder,
    check_vocabulary,
    cpu_precision_for,
    normalized_rows,
)
from marsbench.encoder.adapters.hub import model_folder
from marsbench.encoder.adapters.image_processing import describe_image_processor, on_backend
from marsbench.encoder.errors import ModelLoadFailed
from marsbench.encoder.registry import ModelSpec

log = logging.getLogger(__name__)

_META = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
HUB_PATTERNS = ([*_META, "model*.safetensors", "adapter*"], [*_META, "pytorch_model*.bin", "adapter*"])
WEIGHT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class MllmEmbedder(TorchEmbedder):
    """A transformers MLLM used as an embedder. Subclasses set the class attributes and the
    prompt builders; the defaults here are those most of them share."""

    # transformers class loading the weights (name in `transformers`).
    model_class: ClassVar[str]
    # Which side the tokenizer pads; pooling rules depend on it.
    padding_side: ClassVar[str] = "right"
    # Named prompts the model defines (jina: query, passage) and whether instructions are taken.
    prompt_names: tuple[str, ...] = ()
    accepts_instruction = False
    # What `preprocess_image` does before the processor, as cards and run records say it.
    image_preparation: ClassVar[str] = ""

    def __init__(self, spec: ModelSpec, model: Any, processor: Any, options: RuntimeOptions) -> None:
        super().__init__(spec, model, options)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = self.padding_side
        self.image_size = None  # dynamic resolution
        steps = [self.image_preparation] if self.image_preparation else []
        self.preprocessing = "; ".join([*steps, describe_image_processor(processor.image_processor)])
        self.dimension = int(self.embed_texts(["probe"]).shape[-1])

    def rows(self, pooled: torch.Tensor) -> np.ndarray:
        """Unit rows in float32. In the reference's own CPU dtype (MARSBENCH_ENCODER_CPU_PRECISION=
        reference) the vector is normalised in the dtype it was pooled in, as the published codes
        do, then widened; otherwise in float32."""
        if self._device.type == "cpu" and self._cpu_precision != "fp32":
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return normalized_rows(pooled)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, spec: ModelSpec, options: RuntimeOptions) -> MllmEmbedder:
        import transformers

        folder = model_folder(spec, options, HUB_PATTERNS)
        spec = cls.published_options(spec, folder)
        device = options.torch_device()
        dtype = cls.load_dtype(spec, options)
        try:
            processor = cls.load_processor(folder, spec)
            model = cls.load_weights(getattr(transformers, cls.model_class), folder, dtype, spec, options)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelLoadFailed(
                f"cannot load {cls.model_class} {spec.name!r} from {folder}: {exc}"
            ) from exc
        tokenizer = processor.tokenizer
        text_config = getattr(model.config, "text_config", model.config)
        check_vocabulary(
            len(tokenizer), getattr(text_config, "vocab_size", None), what=f"tokenizer of {spec.name!r}"
        )
        model.eval().to(device)
        return cls(spec, model, processor, options)

    @classmethod
    def published_options(cls, spec: ModelSpec, folder: Path) -> ModelSpec:
        """The spec with options the model's own files set, where its registry entry sets none."""
        return spec

    @classmethod
    def load_dtype(cls, spec: ModelSpec, options: RuntimeOptions) -> torch.dtype:
        return weights_dtype(spec, options)

    @classmethod
    def load_processor(cls, folder: Path, spec: ModelSpec) -> Any:
        from transformers import AutoProcessor

        return on_backend(AutoProcessor.from_pretrained(folder, **cls.processor_kwargs(spec)), folder, spec)

    @classmethod
    def processor_kwargs(cls, spec: ModelSpec) -> dict[str, Any]:
        return {}

    @classmethod
    def load_weights(
        cls, model_class: Any, folder: Path, dtype: torch.dtype, spec: ModelSpec, options: RuntimeOptions
    ) -> Any:
        model, info = model_class.from_pretrained(
            folder, dtype=dtype, output_loading_info=True, local_files_only=True, attn_implementation="sdpa"
        )
        refuse_missing(spec, folder, info)
        return model

    # -- prompts -------------------------------------------------------------------------------

    # The instruction used when a request sets none, per modality; a registry entry may replace
    # them with options `text_instruction` / `image_instruction`.
    default_instructions: ClassVar[dict[str, str]] = {}

    @classmethod
    def prompt_card(cls, spec: ModelSpec) -> dict[str, str]:
        """The default prompts, as model cards and run records show them."""
        modalities = cls.default_instructions
        return {f"{modality}_instruction": cls.instruction_of(spec, modality) for modality in modalities}

    @classmethod
    def instruction_of(cls, spec: ModelSpec, modality: str, requested: str | None = None) -> str:
        if requested is not None:
            return requested
        configured = spec.options.get(f"{modality}_instruction")
        return str(configured) if configured is not None else cls.default_instructions[modality]

    def prompts(self) -> dict[str, str]:
        return self.prompt_card(self.spec)

    def text_prompts(self, texts: Sequence[str], options: PromptOptions) -> list[str]:
        raise NotImplementedError

    def image_prompts(self, count: int, options: PromptOptions) -> list[str]:
        raise NotImplementedError

    # -- embedding -----------------------------------------------------------------------------

    def preprocess_image(self, image: Image.Image) -> Any:
        return image.convert("RGB")

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        inputs = self.processor(
            text=self.text_prompts(list(texts), options),
            padding=True,
            return_tensors="pt",
            **self.text_kwargs(),
        )
        return self.rows(self.pool(self.run(inputs), inputs))

    @torch.inference_mode()
    def embed_prepared(self, items: Sequence[Any], options: PromptOptions = DEFAULT_PROMPT) -> np.ndarray:
        inputs = self.processor(
            text=self.image_prompts(len(items), options),
            images=list(items),
            padding=True,
            return_tensors="pt",
            **self.image_kwargs(),
        )
        return self.rows(self.pool(self.run(inputs), inputs))

    def text_kwargs(self) -> dict[str, Any]:
        return {}

    def image_kwargs(self) -> dict[str, Any]:
        return {}

    def run(self, inputs: Any) -> torch.Tensor:
        inputs = inputs.to(self._device)
        with self.autocast():
            return self.hidden_states(inputs)

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        """The last layer's hidden states (B, L, D), after the final norm: the same tensor as
        `output_hidden_states=True` gives last, taken from the inner model so that neither every
        layer's states nor the LM head's logits (B x L x vocabulary) are materialised."""
        inner = getattr(self.module, "model", self.module)
        return inner(**inputs, return_dict=True).last_hidden_state

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        raise NotImplementedError

    def count_tokens(self, texts: Sequence[str]) -> int:
        if not texts:
            return 0
        encoded = self.tokenizer(self.text_prompts(list(texts), DEFAULT_PROMPT), padding=True)
        return int(sum(sum(row) for row in encoded["attention_mask"]))


def weights_dtype(spec: ModelSpec, options: RuntimeOptions) -> torch.dtype:
    """MLLMs load their weights in the model's GPU precision (bf16 unless the registry says
    otherwise); on the CPU in fp32, or in the reference's CPU dtype when the encoder asks for it."""
    if options.torch_device().type != "cuda":
        return WEIGHT_DTYPES[cpu_precision_for(spec, options)]
    return WEIGHT_DTYPES[spec.precision or "bf16"]


def refuse_missing(spec: ModelSpec, folder: Path, info: dict[str, list[Any]]) -> None:
    missing = list(info.get("missing_keys", []))
    mismatched = list(info.get("mismatched_keys", []))
    if missing or mismatched:
        raise ModelLoadFailed(
            f"model {spec.name!r}: the weights in {folder} do not fit the class ({len(missing)} missing, "
            f"{len(mismatched)} mismatched, e.g. {(missing + mismatched)[:4]})"
        )


class _LoadResult(Protocol):
    """torch's `load_state_dict` result, which peft's `set_peft_model_state_dict` passes on."""

    @property
    def missing_keys(self) -> list[str]: ...

    @property
    def unexpected_keys(self) -> list[str]: ...


def merge_adapter_state(model: Any, config: Any, state: dict[str, torch.Tensor], spec: ModelSpec) -> Any:
    """Wrap `model` with peft for the LoRA/DoRA `config`, load the adapter tensors `state` (keys as
    peft saves them, `base_model.model.<module>.lora_A.weight`), refuse any tensor without a module
    or module without tensors, and merge: numerically the unmerged adapter's function.

    peft's own loading matches keys by name and silently skips tensors that name no module (e.g.
    adapters saved for an older transformers module layout), which would serve the base model."""
    from peft import PeftModel, set_peft_model_state_dict

    config.inference_mode = True
    wrapped = PeftModel(model, config)
    # peft annotates the result as `namedtuple` (the factory), which names no fields.
    result: _LoadResult = set_peft_model_state_dict(wrapped, state)
    unexpected = list(result.unexpected_keys)
    missing = [key for key in result.missing_keys if ".lora_" in key]
    if unexpected or missing:
        examples = (unexpected + missing)[:3]
        raise ModelLoadFailed(
            f"model {spec.name!r}: the adapter does not fit the model ({len(unexpected)} adapter tensors "
            f"without a module, {len(missing)} adapter modules without weights, e.g. {examples})"
        )
    return wrapped.merge_and_unload()
