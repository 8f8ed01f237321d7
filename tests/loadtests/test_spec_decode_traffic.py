"""loadtests/spec_decode_traffic.py: the weight bytes it counts for the model's building blocks, checked against
the parameters they own, and its hooks gone after the block."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import engine.model as model_module
from engine.config import ModelConfig
from engine.model import Glm4MoeForCausalLM
from loadtests.spec_decode_traffic import WeightTraffic

sys.path.insert(0, str(Path(__file__).parents[1]))
from model_factory import TINY_CONFIG  # noqa: E402


def random_model() -> Glm4MoeForCausalLM:
    model = Glm4MoeForCausalLM(ModelConfig.from_dict(dict(TINY_CONFIG, architectures=["Glm4MoeForCausalLM"])))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def expert_bytes(moe: model_module.MoE) -> int:
    return moe.w13[0].nbytes + moe.w2[0].nbytes


def test_an_moe_layer_counts_its_router_shared_expert_and_only_the_experts_its_rows_picked() -> None:
    model = random_model()
    moe = model.model.layers[1].mlp
    fixed = moe.gate.weight.nbytes + moe.gate.e_score_correction_bias.nbytes
    fixed += sum(p.nbytes for p in moe.shared_experts.parameters())
    for num_rows in (1, 4):
        x = torch.randn(num_rows, model.config.hidden_size)
        with torch.inference_mode():
            picked = torch.unique(moe.gate(x)[0]).numel()
            with WeightTraffic(model) as traffic:
                moe(x)
        assert picked >= model.config.num_experts_per_tok
        assert traffic.bytes == fixed + picked * expert_bytes(moe)
        assert traffic.mtp_bytes == 0


def test_logits_count_the_whole_head_and_mtp_logits_count_as_mtp() -> None:
    model = random_model()
    hidden = torch.randn(3, model.config.hidden_size)
    with torch.inference_mode(), WeightTraffic(model) as traffic:
        model.compute_logits(hidden)
        assert (traffic.bytes, traffic.mtp_bytes) == (model.lm_head.weight.nbytes, 0)
        model.compute_mtp_logits(hidden)
    assert traffic.steps == 0  # logits are not a target forward
    head = model.mtp.head if model.mtp.head is not None else model.lm_head
    assert traffic.mtp_bytes == head.weight.nbytes
    assert traffic.bytes == model.lm_head.weight.nbytes + head.weight.nbytes


def test_leaving_the_block_removes_every_hook_and_wrapper() -> None:
    model = random_model()
    fused_experts = model_module.fused_experts
    with WeightTraffic(model):
        assert model_module.fused_experts is not fused_experts
    assert model_module.fused_experts is fused_experts
    assert "mtp_forward" not in model.__dict__ and "compute_mtp_logits" not in model.__dict__
    assert all(not m._forward_hooks for m in model.modules())


def test_the_script_prints_a_row_per_k_with_mtp_bytes_only_when_drafting(capsys) -> None:
    from loadtests.spec_decode_traffic import main

    main(["--ks", "0,1", "--prompts", "1", "--max-tokens", "6", "--repeats", "1"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[0] in ("0", "1")]
    assert [r[0] for r in rows] == ["0", "1"]
    (k0, k1) = rows
    assert k0[1] == "1.00" and k0[3] == "0.00" and k0[5] == "1.00x" and float(k1[3]) > 0  # k = 0: a token a step
    assert float(k1[1]) >= 1.0  # output tokens per step: at least the verified one
