"""scripts/tiny_model/checkpoint.py: what training saves is what our loader (and so the engine) reads back."""

from __future__ import annotations

import json

import torch

from engine.loader import load_model
from kernels.attention import DenseAttention
from kernels.attention.base import AttentionMetadata
from scripts.tiny_model.checkpoint import build_untrained, hf_config_dict, save_checkpoint

_SMALL = dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2, head_dim=16)


def _logits(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    config = model.config
    attn = DenseAttention(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                          config.head_dim**-0.5)
    attn.plan(AttentionMetadata.for_prefill([len(ids)]))
    positions = torch.arange(len(ids))
    with torch.no_grad():
        hidden = model(ids, positions, attn)
        mtp = model.mtp_forward(torch.roll(ids, -1), hidden, positions, attn)
        return model.compute_logits(hidden), model.compute_mtp_logits(mtp)


def test_saved_checkpoint_loads_back_with_the_same_logits(tmp_path):
    for tied in (True, False):
        config = hf_config_dict(256, [1, 2, 3], 0, tie_word_embeddings=tied, **_SMALL)
        model = build_untrained(config, seed=3).eval()
        out = save_checkpoint(model, config, tmp_path / str(tied))
        assert json.loads((out / "config.json").read_text()) == config
        loaded = load_model(out, dtype=torch.float32)
        ids = torch.randint(0, 256, (24,), generator=torch.Generator().manual_seed(0))
        # The checkpoint stores bf16 except the router (fp32): compare with the original rounded the same way.
        with torch.no_grad():
            for name, param in model.named_parameters():
                if not name.endswith(("mlp.gate.weight", "e_score_correction_bias")):
                    param.copy_(param.to(torch.bfloat16).to(torch.float32))
        for got, want in zip(_logits(loaded, ids), _logits(model, ids)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
