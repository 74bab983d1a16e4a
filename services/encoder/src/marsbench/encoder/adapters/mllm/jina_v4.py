"""jina-embeddings-v4 as the reference runs it (`model.encode_text(task="retrieval",
prompt_name="query")`, `model.encode_image(task="retrieval")`), on transformers' Qwen2.5-VL with
the task's LoRA adapter merged in.

Facts (hub remote code `modeling_jina_embeddings_v4.py`, see models.toml `facts`):
- texts are `"{Query|Passage}: " + text`, no chat template; the reference sends every text with
  prompt_name "query" (queries and paired-task captions alike), which is the registry's
  `text_prompt`;
- images are the fixed prompt IMAGE_PROMPT;
- M-RoPE positions come from `get_rope_index(input_ids, image_grid_thw, attention_mask)` on every
  call (padding-aware), the forward runs without cache;
- pooling: if the batch's first row holds `<|vision_start|>`, the mean over
  `<|vision_start|>`..`<|vision_end|>` (image tokens only), else the attention-mask mean over all
  tokens (the prefix included); then L2 normalisation;
- the remote code runs under bf16 autocast whatever the weights' dtype (the reference loads fp16).

Adapter layouts (see `task_adapter`): the current hub repository has one peft LoRA adapter per
task in `adapters/<task>/`; older revisions had one adapter in `adapters/` whose weights hold
every task (`lora_A.<task>.weight`, the remote code's MultiAdapterLinear). Both are applied by
selecting the task's tensors, naming them after this model's modules and merging with peft.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from marsbench.encoder.adapters.base import PromptOptions, RuntimeOptions, autocast_for
from marsbench.encoder.adapters.mllm.base import MllmEmbedder, merge_adapter_state, weights_dtype
from marsbench.encoder.adapters.mllm.pooling import masked_mean, span_mean
from marsbench.encoder.errors import ModelLoadFailed
from marsbench.encoder.registry import ModelSpec

if TYPE_CHECKING:
    from transformers import Qwen2_5_VLModel

log = logging.getLogger(__name__)

PREFIXES = {"query": "Query: ", "passage": "Passage: "}
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
DEFAULT_TASK = "retrieval"
DEFAULT_TEXT_PROMPT = "query"
# The processor's text_max_length at the pinned revision (older revisions: 32768).
TEXT_MAX_LENGTH = 8192

# Adapter tensor names (after peft's "base_model.model." prefix) to this model's module names:
# the pre-4.52 Qwen2.5-VL layout (`model.layers`, `visual`), the current one (`model.language_model`,
# `model.visual`) and the bare Qwen2_5_VLModel one all land on `language_model.*` / `visual.*`.
_RENAMES = [
    (re.compile(r"^model\.language_model\."), "language_model."),
    (re.compile(r"^model\.visual\."), "visual."),
    (re.compile(r"^model\."), "language_model."),
]
_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?P<kind>lora_[AB]|lora_magnitude_vector)(?:\.(?P<task>[^.]+))?\.weight$"
)
# The multi-vector projector is not part of the single-vector path.
_UNUSED_MODULES = ("multi_vector_projector",)


class JinaV4Embedder(MllmEmbedder):
    model_class = "Qwen2_5_VLModel"
    # Mean pooling with padding-aware positions does not depend on the side; right as the
    # Qwen tokenizers default.
    padding_side = "right"
    prompt_names = ("query", "passage")
    accepts_instruction = False

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load_weights(
        cls, model_class: Any, folder: Path, dtype: torch.dtype, spec: ModelSpec, options: RuntimeOptions
    ) -> Any:
        model = super().load_weights(model_class, folder, dtype, spec, options)
        task = str(spec.options.get("task", DEFAULT_TASK))
        config, tensors = task_adapter(folder, task, spec)
        return merge_task_adapter(model, config, tensors, spec)

    # -- prompts -------------------------------------------------------------------------------

    @classmethod
    def prompt_card(cls, spec: ModelSpec) -> dict[str, str]:
        name = cls.text_prompt_name(spec)
        return {
            "task": str(spec.options.get("task", DEFAULT_TASK)),
            "text_prompt": name,
            "text_prefix": PREFIXES[name],
            "image_prompt": IMAGE_PROMPT,
        }

    @classmethod
    def text_prompt_name(cls, spec: ModelSpec, requested: str | None = None) -> str:
        name = requested or str(spec.options.get("text_prompt", DEFAULT_TEXT_PROMPT))
        if name not in PREFIXES:
            raise ModelLoadFailed(
                f"model {spec.name!r}: text_prompt {name!r} is not one of {sorted(PREFIXES)}"
            )
        return name

    def text_prompts(self, texts: Sequence[str], options: PromptOptions) -> list[str]:
        # The remote code's prefix follows the prompt name alone: its text-matching override reads
        # the model's `task` property, which the reference never sets (it passes task= per call).
        prefix = PREFIXES[self.text_prompt_name(self.spec, options.prompt_name)]
        return [prefix + text for text in texts]

    def image_prompts(self, count: int, options: PromptOptions) -> list[str]:
        return [IMAGE_PROMPT] * count

    def text_kwargs(self) -> dict[str, Any]:
        return {"truncation": True, "max_length": int(self.spec.options.get("max_length", TEXT_MAX_LENGTH))}

    # -- forward and pooling -------------------------------------------------------------------

    @property
    def qwen(self) -> Qwen2_5_VLModel:
        """The merged model as its transformers class, so that its config and rope index are typed."""
        from transformers import Qwen2_5_VLModel  # transformers loads lazily: not at import

        module = self.module
        if not isinstance(module, Qwen2_5_VLModel):
            raise TypeError(f"model {self.spec.name!r} is a {type(module).__name__}, not a Qwen2_5_VLModel")
        return module

    @classmethod
    def load_dtype(cls, spec: ModelSpec, options: RuntimeOptions) -> torch.dtype:
        # The reference's dtype on a CPU is fp32 weights under bf16 autocast, not bf16 weights.
        return torch.float32 if options.torch_device().type != "cuda" else weights_dtype(spec, options)

    def autocast(self) -> AbstractContextManager[object]:
        # The remote code autocasts every forward to bf16, on the CPU too; marsbench does so on a
        # CPU only under MARSBENCH_ENCODER_CPU_PRECISION=reference (the registry's cpu_precision).
        if self._device.type == "cpu" and self._cpu_precision == "bf16":
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return autocast_for(self._device, "bf16")

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        grid = inputs.get("image_grid_thw")
        types = inputs.get("mm_token_type_ids")
        if types is None:
            types = (input_ids == self.qwen.config.image_token_id).int()
        positions, _ = self.qwen.get_rope_index(
            input_ids, mm_token_type_ids=types, image_grid_thw=grid, attention_mask=mask
        )
        output = self.module(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=grid,
            use_cache=False,
            return_dict=True,
        )
        return output.last_hidden_state

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        input_ids = inputs["input_ids"]
        config = self.qwen.config
        # The reference decides from the first row only; batches are one modality.
        if bool((input_ids[0] == config.vision_start_token_id).any()):
            return span_mean(hidden, input_ids, config.vision_start_token_id, config.vision_end_token_id)
        return masked_mean(hidden, inputs["attention_mask"])


def task_adapter(folder: Path, task: str, spec: ModelSpec) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The LoRA config and tensors of `task`, from either hub layout, with the tensors keyed
    `<module>.lora_A.weight` etc. (peft's prefix and the task level removed)."""
    from safetensors.torch import load_file

    adapters = folder / "adapters"
    per_task = adapters / task
    if (per_task / "adapter_config.json").is_file():
        directory, multi = per_task, False
    elif (adapters / "adapter_config.json").is_file():
        directory, multi = adapters, True
    else:
        found = sorted(p.parent.name for p in adapters.glob("*/adapter_config.json"))
        raise ModelLoadFailed(
            f"model {spec.name!r}: no adapter for task {task!r} in {adapters} "
            f"(neither {task}/adapter_config.json nor one adapter_config.json; task adapters: {found})"
        )
    weights = directory / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelLoadFailed(f"model {spec.name!r}: {weights} is missing")
    config = json.loads((directory / "adapter_config.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    tasks_seen: set[str] = set()
    for key, value in load_file(weights).items():
        name = key.removeprefix("base_model.model.")
        match = _LORA_KEY.match(name)
        if match is None:
            raise ModelLoadFailed(f"model {spec.name!r}: adapter tensor {key!r} is not a LoRA weight")
        key_task = match["task"]
        if multi and key_task is None:
            raise ModelLoadFailed(f"model {spec.name!r}: {key!r} names no task in a multi-task adapter")
        if key_task is not None:
            if not multi:
                raise ModelLoadFailed(f"model {spec.name!r}: unexpected adapter tensor {key!r}")
            tasks_seen.add(key_task)
            if key_task != task:
                continue
        tensors[f"{match['module']}.{match['kind']}.weight"] = value
    if not tensors:
        raise ModelLoadFailed(
            f"model {spec.name!r}: the adapter in {directory} holds no weights for task {task!r} "
            f"(tasks: {sorted(tasks_seen)})"
        )
    return config, tensors


def module_name(name: str) -> str:
    """An adapter module path (any Qwen2.5-VL checkpoint layout) as a Qwen2_5_VLModel module."""
    for pattern, replacement in _RENAMES:
        renamed, count = pattern.subn(replacement, name)
        if count:
            return renamed
    return name


def merge_task_adapter(
    model: Any, config: dict[str, Any], tensors: dict[str, torch.Tensor], spec: ModelSpec
) -> Any:
    """Inject the LoRA exactly into the modules its tensors name, load every tensor (refusing
    any left over or missing) and merge it into the weights."""
    from peft import LoraConfig

    modules = dict(model.named_modules())
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        module, _, suffix = key.partition(".lora_")
        if module.split(".")[-1] in _UNUSED_MODULES:
            continue
        target = module_name(module)
        if not isinstance(modules.get(target), torch.nn.Linear):
            raise ModelLoadFailed(
                f"model {spec.name!r}: adapter module {module!r} is not a linear layer of the model"
            )
        state[f"{target}.lora_{suffix}"] = value
    targets = sorted({key.partition(".lora_")[0] for key in state})
    known = set(LoraConfig.__dataclass_fields__)
    fields = {k: v for k, v in config.items() if k in known}
    # Target the modules the tensors name, whatever form (list or regex over an older module
    # layout) the adapter's own target_modules takes.
    fields.update(target_modules=targets, inference_mode=True, lora_dropout=0.0)
    fields.pop("base_model_name_or_path", None)
    log.info("model %s: merging a LoRA adapter into %d modules", spec.name, len(targets))
    peft_state = {f"base_model.model.{k}": v for k, v in state.items()}
    return merge_adapter_state(model, LoraConfig(**fields), peft_state, spec)
