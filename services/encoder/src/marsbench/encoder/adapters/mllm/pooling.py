"""How an MLLM embedder turns a batch of hidden states (B, L, D) into one vector per item.

Pure tensor functions, one per rule the published embedders use; each names who uses it. The
rules differ in exactly the way that matters under padding, so they are kept apart rather than
unified: e.g. `last_column` under right padding pools a pad token, as E5-V's reference does.
"""

from __future__ import annotations

import torch


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last real token of each row (GME, VLM2Vec, B3): if every row ends in a real token the
    batch is left-padded and the last column is taken, else the row's token count minus one."""
    if bool(mask[:, -1].sum() == mask.shape[0]):
        return hidden[:, -1]
    lengths = mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths]


def last_in_mask(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The position of the last 1 in the attention mask (Qwen3-VL-Embedding), whatever the padding."""
    length = mask.shape[1]
    last = length - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def last_column(hidden: torch.Tensor) -> torch.Tensor:
    """The batch's last position, pad or not (E5-V; Ops-MM, which pads on the left)."""
    return hidden[:, -1]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens (jina-embeddings-v4 text)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def span_mean(hidden: torch.Tensor, input_ids: torch.Tensor, start_id: int, end_id: int) -> torch.Tensor:
    """Mean over the tokens from each row's first `start_id` to its first `end_id` after it,
    both included (jina-embeddings-v4 images: <|vision_start|> .. <|vision_end|>)."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    rows = []
    for i in range(input_ids.shape[0]):
        starts = (input_ids[i] == start_id).nonzero()
        ends = (input_ids[i] == end_id).nonzero()
        if len(starts) == 0 or len(ends) == 0:
            raise ValueError(f"row {i} has no {start_id}..{end_id} span to pool")
        start = int(starts[0])
        end = int(ends[ends >= start][0]) if bool((ends >= start).any()) else int(ends[-1])
        rows.append((positions >= start) & (positions <= end))
    span = torch.stack(rows).unsqueeze(-1).to(hidden.dtype)
    return (hidden * span).sum(dim=1) / span.sum(dim=1)


def sequential_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """Plain 0..L-1 positions in all three M-RoPE sections (3, B, L): what GME's code feeds its
    decoder, and what VLM2Vec's code feeds after its first call (it caches rope deltas)."""
    batch, length = input_ids.shape
    return torch.arange(length, device=input_ids.device).expand(3, batch, length)
