"""E5-V (royokong/e5-v): LLaVA-Next on Llama-3 8B, prompted to summarise its input in one word.

Facts, as the reference (MarsRetrieval models/e5v.py, image_encoder/e5v_image_encoder.py,
text_encoder/e5v_text_encoder.py) and the model card run it:
- the Llama-3 chat turn below around `<image>\\nSummary above image in one word: ` for images and
  `<sent>\\nSummary above sentence in one word: ` for texts, `<sent>` replaced by the text; no system
  prompt, no instruction; the tokenizer adds <|begin_of_text|> itself;
- `processor.patch_size = 14` (the hub repo has no processor_config.json, so the processor has none);
- the embedding is the last layer's hidden state at the batch's last position, `[:, -1]`, whatever the
  padding side, then L2-normalised. Under right padding a shorter row is pooled at a pad token; that is
  the reference's rule and it is kept (see `pool`);
- the padding side is the tokenizer's own, as loaded from the model folder (not forced here).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch

from marsbench.encoder.adapters.base import PromptOptions, RuntimeOptions
from marsbench.encoder.adapters.image_processing import on_backend
from marsbench.encoder.adapters.mllm.base import MllmEmbedder
from marsbench.encoder.adapters.mllm.pooling import last_column
from marsbench.encoder.registry import ModelSpec

LLAMA3_TEMPLATE = (
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n \n"
)
IMAGE_PROMPT = LLAMA3_TEMPLATE.format("<image>\nSummary above image in one word: ")
TEXT_PROMPT = LLAMA3_TEMPLATE.format("<sent>\nSummary above sentence in one word: ")
SENTENCE_SLOT = "<sent>"
# The reference's fix for the hub processor's missing patch size (CLIP ViT-L/14 at 336 px).
PATCH_SIZE = 14


class E5VEmbedder(MllmEmbedder):
    model_class: ClassVar[str] = "LlavaNextForConditionalGeneration"
    accepts_instruction = False

    def __init__(self, spec: ModelSpec, model: Any, processor: Any, options: RuntimeOptions) -> None:
        # The base class imposes its `padding_side`; E5-V pools `[:, -1]` under whatever side the
        # tokenizer itself pads, so put the tokenizer's own setting back.
        own_side = processor.tokenizer.padding_side
        super().__init__(spec, model, processor, options)
        self.tokenizer.padding_side = own_side
        # Under right padding a short text is pooled at a pad, so its vector depends on its
        # batch-mates: the engine then embeds each request exactly as the caller grouped it.
        self.batch_invariant = own_side == "left"

    @classmethod
    def load_processor(cls, folder: Path, spec: ModelSpec) -> Any:
        from transformers import LlavaNextProcessor

        processor = on_backend(
            LlavaNextProcessor.from_pretrained(folder, local_files_only=True), folder, spec
        )
        # Set unconditionally, as the reference does; a registry option may name another size.
        processor.patch_size = int(spec.options.get("patch_size", PATCH_SIZE))
        return processor

    # -- prompts -------------------------------------------------------------------------------

    @classmethod
    def prompt_card(cls, spec: ModelSpec) -> dict[str, str]:
        return {"text_prompt": TEXT_PROMPT, "image_prompt": IMAGE_PROMPT}

    def text_prompts(self, texts: Sequence[str], options: PromptOptions) -> list[str]:
        # str.replace on the formatted template, as the reference builds it
        return [TEXT_PROMPT.replace(SENTENCE_SLOT, text) for text in texts]

    def image_prompts(self, count: int, options: PromptOptions) -> list[str]:
        return [IMAGE_PROMPT] * count

    # -- embedding -----------------------------------------------------------------------------

    def autocast(self) -> AbstractContextManager[object]:
        # The reference runs the weights in their loaded dtype (fp16 on CUDA) without autocast;
        # autocast would move norms and softmax to fp32 and change the numbers.
        return nullcontext()

    def hidden_states(self, inputs: Any) -> torch.Tensor:
        # logits_to_keep=1: the hidden states are those of the plain forward pass, without a
        # (batch x length x 128k) logits tensor nobody reads.
        output = self.module(**inputs, output_hidden_states=True, return_dict=True, logits_to_keep=1)
        return output.hidden_states[-1]

    def pool(self, hidden: torch.Tensor, inputs: Any) -> torch.Tensor:
        # The batch's last column, pad or not: the reference's rule (and the model card's).
        return last_column(hidden)
