"""MTP acceptance at k = 1, greedy, computed directly from one dense forward over prompt + generated tokens.

With k = 1, after the target emits t_{p+1} from h_p the MTP layer drafts t_{p+2} from (h_p, t_{p+1}); greedy
verification accepts the draft iff it equals the target's argmax at p+1. On a greedy generation t_{p+2} IS that
argmax, so acceptance = share of generated positions where argmax(MTP(h_p, t_{p+1})) == t_{p+2}.
"""

from __future__ import annotations

import torch

from engine.model import Glm4MoeForCausalLM
from kernels.attention import DenseAttention
from kernels.attention.base import AttentionMetadata


@torch.no_grad()
def mtp_acceptance(model: Glm4MoeForCausalLM, prompt_ids: list[int],
                   output_ids: list[int]) -> tuple[int, int, int, int]:
    """(accepted drafts, drafts, target argmax == generated token, generated tokens checked) for one turn."""
    config = model.config
    ids = torch.tensor(prompt_ids + output_ids, dtype=torch.int64)
    n, m = len(prompt_ids), len(output_ids)
    if m == 0:
        return 0, 0, 0, 0
    attn = DenseAttention(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                          config.head_dim**-0.5)
    attn.plan(AttentionMetadata.for_prefill([len(ids)]))
    positions = torch.arange(len(ids))
    hidden = model(ids, positions, attn)  # [n+m, H]
    # Target greedy: row p predicts t_{p+1}; generated tokens sit at positions n..n+m-1.
    target = model.compute_logits(hidden[n - 1 : n + m - 1]).argmax(-1)  # [m]
    agree = int((target == ids[n : n + m]).sum())
    if m < 2:
        return 0, 0, agree, m
    next_ids = torch.cat([ids[1:], ids[-1:]])  # row p gets t_{p+1} (the last row's input is unused)
    mtp_hidden = model.mtp_forward(next_ids, hidden, positions, attn)
    # Rows p = n-1 .. n+m-3 draft t_{p+2} = generated tokens 1..m-1.
    drafts = model.compute_mtp_logits(mtp_hidden[n - 1 : n + m - 2]).argmax(-1)  # [m-1]
    accepted = int((drafts == ids[n + 1 : n + m]).sum())
    return accepted, m - 1, agree, m
