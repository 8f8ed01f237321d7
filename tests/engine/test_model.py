"""Our Glm4MoeForCausalLM against transformers' (the oracle) on tiny random configs covering every config knob."""

from __future__ import annotations

import pytest
import torch

from engine.loader import load_model
from kernels.attention import AttentionMetadata, DenseAttention
from model_factory import load_hf_model, make_tiny_model_dir

# Each config flips knobs relative to tests/model_factory.TINY_CONFIG (n_group 2 / topk_group 1, scaling 2.5,
# QK-norm on, first_k_dense_replace 1, untied, attention bias, head_dim = hidden / heads).
CONFIGS = {
    "grouped_rsf2.5_qknorm": {},
    "rsf1_noqknorm_dense2_tied": dict(routed_scaling_factor=1.0, use_qk_norm=False, first_k_dense_replace=2,
                                      tie_word_embeddings=True, n_group=1, topk_group=1),
    "headdim24_groups4of2": dict(head_dim=24, n_group=4, topk_group=2, num_experts_per_tok=3),
    "nobias_nonorm_2shared_gqa4": dict(attention_bias=False, norm_topk_prob=False, n_shared_experts=2,
                                       num_attention_heads=8, num_key_value_heads=2, head_dim=8),
    "fullrotary_theta1e4_mha": dict(partial_rotary_factor=1.0, rope_theta=10000.0, num_key_value_heads=4,
                                    n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=3),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp(request.param), seed=len(request.param), **CONFIGS[request.param])
    return load_model(path, dtype="float32"), load_hf_model(path)


def dense_backend(model) -> DenseAttention:
    c = model.config
    return DenseAttention(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.head_dim**-0.5)


def run_ours(model, sequences: list[list[int]]) -> list[torch.Tensor]:
    """Logits of several sequences run as one flattened batch."""
    attn = dense_backend(model)
    attn.plan(AttentionMetadata.for_prefill([len(s) for s in sequences]))
    ids = torch.tensor([t for s in sequences for t in s])
    positions = torch.cat([torch.arange(len(s)) for s in sequences])
    with torch.no_grad():
        logits = model.compute_logits(model(ids, positions, attn))
    return list(logits.split([len(s) for s in sequences]))


def test_logits_match_transformers(pair):
    ours, hf = pair
    gen = torch.Generator().manual_seed(1)
    sequences = [torch.randint(0, 1000, (n,), generator=gen).tolist() for n in (1, 5, 17, 40)]
    for seq, logits in zip(sequences, run_ours(ours, sequences)):
        with torch.no_grad():
            ref = hf(torch.tensor([seq])).logits[0]
        rel = (logits - ref).abs().max() / ref.abs().max()
        assert rel < 1e-4, f"relative error {rel:.2e} for a sequence of {len(seq)} tokens"


def test_greedy_64_tokens_match_transformers(pair):
    ours, hf = pair
    prompt = [5, 17, 230, 999, 42, 7]
    hf.generation_config.eos_token_id = None  # generate exactly 64 tokens
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=64, do_sample=False, pad_token_id=0)[0, len(prompt):]
    tokens = list(prompt)
    for _ in range(64):  # recompute the whole sequence each step: the model alone, no cache involved
        tokens.append(int(run_ours(ours, [tokens])[0][-1].argmax()))
    assert tokens[len(prompt):] == ref.tolist()


def test_mtp_draft_logits_match_transformers(pair):
    from transformers.modeling_layers import MtpModel

    ours, hf = pair
    mtp_hf = MtpModel.from_pretrained(hf).float().eval()
    seq = torch.randint(0, 1000, (12,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        hidden = hf(seq[None], output_hidden_states=True).hidden_states[-1]  # [1, 12, H] after model.norm
        # Row p takes h_p and t_{p+1}; transformers positions the row at t_{p+1} (reference section 4.4).
        positions = torch.arange(1, 12)
        ref_hidden = mtp_hf.forward_layer(0, hidden[:, :-1], positions[None], None, input_ids=seq[None, 1:])
        ref = mtp_hf._project_to_logits(ref_hidden)[0]
        attn = dense_backend(ours)
        attn.plan(AttentionMetadata.for_prefill([11]))
        g = ours.mtp_forward(seq[1:], hidden[0, :-1], positions, attn)
        logits = ours.compute_mtp_logits(g)
    assert (logits - ref).abs().max() / ref.abs().max() < 1e-4
    assert torch.equal(logits.argmax(-1), ref.argmax(-1))
    assert ours.mtp.head is None, "an equal shared_head.head must be aliased to lm_head"


def test_flattened_batch_equals_sequences_alone(pair):
    ours, _ = pair
    sequences = [[1, 2, 3, 4], [9] * 9, [100, 200]]
    together = run_ours(ours, sequences)
    for seq, logits in zip(sequences, together):
        assert torch.allclose(run_ours(ours, [seq])[0], logits, atol=1e-5)
