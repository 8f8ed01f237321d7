"""Tensor and expert parallelism at the model level: 2 gloo ranks (spawned once) against the single-process model.

Each case loads a tiny random checkpoint on 2 ranks (plain TP, TP + expert parallelism, and a config with one KV
head, a vocabulary that 2 does not divide and tied embeddings) and compares target and MTP logits with world size 1.
fp32 all-reduces change the summation order, so logits are compared with a tolerance and greedy tokens exactly.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from engine.loader import load_model
from model_factory import make_tiny_model_dir
from tp_model_ranks import model_outputs, run_rank

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = make_tiny_model_dir(tmp_path_factory.mktemp("tp_base"), seed=3)
    odd = make_tiny_model_dir(tmp_path_factory.mktemp("tp_odd"), seed=4, num_key_value_heads=1, vocab_size=999,
                              tie_word_embeddings=True)
    own_head = make_tiny_model_dir(tmp_path_factory.mktemp("tp_own_head"), seed=5)
    tensors = load_file(own_head / "model.safetensors")
    tensors["model.layers.4.shared_head.head.weight"].mul_(-1.5)  # the MTP layer keeps its own (sharded) head
    save_file(tensors, own_head / "model.safetensors", metadata={"format": "pt"})
    return {"tp": (base, False), "tp_ep": (base, True), "kv1_vocab999_tied": (odd, False),
            "mtp_own_head": (own_head, True)}


@pytest.fixture(scope="module")
def ranks(dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("tp_out")
    cases = [(name, str(path), ep) for name, (path, ep) in dirs.items()]
    mp.spawn(run_rank, args=(WORLD_SIZE, free_port(), cases, str(out)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("case", ["tp", "tp_ep", "kv1_vocab999_tied", "mtp_own_head"])
def test_logits_match_single_process(case, dirs, ranks):
    path, _ = dirs[case]
    single = load_model(path, dtype=torch.float32)
    assert (single.mtp.head is not None) == (case == "mtp_own_head")
    reference = model_outputs(single)
    for rank, results in enumerate(ranks):
        for key in ("logits", "mtp_logits"):
            ours, ref = results[case][key], reference[key]
            assert ours.shape == ref.shape
            rel = ((ours - ref).abs().max() / ref.abs().max()).item()
            assert rel < 1e-5, f"rank {rank} {key}: relative error {rel:.2e}"
            assert torch.equal(ours.argmax(-1), ref.argmax(-1)), f"rank {rank} {key}: greedy tokens differ"


def _checkpoint_bytes(path) -> dict[str, tuple[tuple[int, ...], int]]:
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return {n: (tuple(f.get_slice(n).get_shape()), f.get_tensor(n).nbytes) for n in f.keys()}


@pytest.mark.parametrize("case", ["tp", "tp_ep"])
def test_each_rank_reads_only_its_slices(case, dirs, ranks):
    path, expert_parallel = dirs[case]
    full = _checkpoint_bytes(path)
    for rank, results in enumerate(ranks):
        reads = {name: (shape, nbytes) for name, shape, nbytes in results[case]["reads"]}
        q = reads["model.layers.0.self_attn.q_proj.weight"][0]
        assert q == (full["model.layers.0.self_attn.q_proj.weight"][0][0] // 2, 64), q
        assert reads["model.layers.1.self_attn.o_proj.weight"][0] == (64, 32)
        assert reads["model.embed_tokens.weight"][0] == (500, 64)
        assert reads["lm_head.weight"][0] == (500, 64)
        assert reads["model.layers.0.mlp.down_proj.weight"][0] == (64, 64)  # intermediate 128 split
        experts = {n for n in reads if ".experts." in n and n.startswith("model.layers.1.")}
        if expert_parallel:  # rank r reads experts 4r..4r+3 whole, never the others
            assert {int(n.split(".")[5]) for n in experts} == set(range(4 * rank, 4 * rank + 4))
            assert reads[f"model.layers.1.mlp.experts.{4 * rank}.gate_proj.weight"][0] == (32, 64)
        else:  # every expert, half its intermediate rows
            assert len(experts) == 8 * 3
            assert reads["model.layers.1.mlp.experts.0.gate_proj.weight"][0] == (16, 64)
            assert reads["model.layers.1.mlp.experts.0.down_proj.weight"][0] == (64, 16)
        replicated = sum(full[n][1] for n in reads if "norm" in n or "gate.weight" in n or "eh_proj" in n
                         or "correction_bias" in n)
        total = sum(nbytes for _, nbytes in reads.values())
        assert total - replicated <= sum(v[1] for v in full.values()) * 0.5 + 1, "a rank read more than its half"
