"""Sampling with speculation draws from the same distribution as without: a chi-square two-sample test on a
24-token tiny model, with every sampling parameter on (temperature, top-k, top-p, min-p and all three penalties).

One fixed prompt, thousands of seeded requests of 4 tokens each. Token 1 comes from the prefill; tokens 2-4 come
from the verify step of drafts d_1, d_2 (then, if d_1 was rejected, from a second verify step). The drafter double proposes the most frequent continuation seen without speculation (a
deterministic function of the context, so exact rejection sampling must preserve the law), which the target
accepts about half the time: both the accept and the residual paths carry many samples. The same test must
detect a classic bug (verify rows whose penalties ignore the earlier drafts, reference pitfall 8).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import engine.model_runner as model_runner
from engine import LLM, SamplingParams
from engine.engine_config import SpeculativeConfig
from engine.mtp_proposer import DraftExtendBatch, MTPProposer
from engine.sampler import SamplingRow
from model_factory import make_tiny_model_dir

VOCAB = 24
PROMPT = [5, 9, 13, 7, 20]
NUM_DRAWS = 2000
P_MIN = 1e-3  # equal distributions pass above this; the deliberate bug must fall below it


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny_vocab24"), seed=4, vocab_size=VOCAB)
    # A random model's logits are near zero (flat distributions); sharper heads make drafts often right.
    tensors = load_file(path / "model.safetensors")
    for name in ("lm_head.weight", "model.layers.4.shared_head.head.weight"):
        tensors[name] = tensors[name] * 8
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return path


def params(seed: int) -> SamplingParams:
    return SamplingParams(temperature=0.5, top_k=8, top_p=0.95, min_p=0.02, presence_penalty=0.4,
                          frequency_penalty=0.3, repetition_penalty=1.3, max_tokens=4, ignore_eos=True, seed=seed)


def draw(model_dir, k: int, seeds: range, drafts: dict | None = None) -> tuple[list[tuple[int, ...]], LLM]:
    llm = LLM(model=model_dir, dtype=torch.float64, device="cpu", max_model_len=16, max_num_seqs=256,
              num_speculative_tokens=k, speculative_disable_by_batch_size=256)  # batches of 256 draft too
    if drafts is not None:
        runner = llm.engine.model_runner
        runner.proposer = ModeDrafter(runner.proposer, drafts)
    outs = llm.generate([{"prompt_token_ids": PROMPT}] * len(seeds), [params(s) for s in seeds], use_tqdm=False)
    return [tuple(o.outputs[0].token_ids) for o in outs], llm


class ModeDrafter(MTPProposer):
    """Drafts, after outputs t_1..t_m, the commonest next token seen without speculation after that prefix, then
    the commonest after that one, and so on (a deterministic function of the committed tokens)."""

    def __init__(self, base: MTPProposer, modes: dict[tuple[int, ...], int]) -> None:
        super().__init__(base.model, SpeculativeConfig(base.num_speculative_tokens), base.block_size, base.device)
        self.modes = modes
        self.outputs: dict[str, list[int]] = {}  # request id -> outputs seen in draft-extend inputs

    def propose(self, hidden: torch.Tensor, batch: DraftExtendBatch, attn) -> tuple[tuple[int, ...], ...]:
        out = []
        for i in np.flatnonzero(batch.is_drafting):
            # Row p's input is the token at position p + 1; outputs start at position len(PROMPT).
            first = int(batch.start_positions[i]) + 1
            outputs = self.outputs.setdefault(batch.req_ids[i], [])
            for position, token in enumerate(batch.committed_input_ids(i), first):
                if position >= len(PROMPT):
                    del outputs[position - len(PROMPT):]
                    outputs.append(int(token))
            context = tuple(outputs)
            for _ in range(self.num_speculative_tokens):
                context += (self.modes.get(context, 0),)
            out.append(context[len(outputs):])
        return tuple(out)


def conditional_modes(samples: list[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
    modes = {}
    for length in (1, 2, 3):
        counts = Counter(s[: length + 1] for s in samples)
        for prefix in {s[:length] for s in samples}:
            modes[prefix] = max(range(VOCAB), key=lambda t: counts[prefix + (t,)])
    return modes


def chi_square_p_value(a: Counter, b: Counter) -> float:
    """Two-sample chi-square homogeneity test; categories expected < 5 times in either sample are pooled."""
    num_a, num_b = sum(a.values()), sum(b.values())
    table, pooled = [], [0, 0]
    for key in set(a) | set(b):
        if (a[key] + b[key]) * min(num_a, num_b) / (num_a + num_b) < 5:
            pooled[0] += a[key]
            pooled[1] += b[key]
        else:
            table.append((a[key], b[key]))
    if sum(pooled):
        table.append(tuple(pooled))
    counts = torch.tensor(table, dtype=torch.float64)  # [C, 2]
    expected = counts.sum(1, keepdim=True) * counts.sum(0, keepdim=True) / counts.sum()
    statistic = ((counts - expected) ** 2 / expected).sum()
    df = len(table) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), statistic / 2))


def histograms(samples: list[tuple[int, ...]]) -> dict[str, Counter]:
    return {"token 2": Counter(s[1] for s in samples), "token 3": Counter(s[2] for s in samples),
            "token 4": Counter(s[3] for s in samples), "tokens 2-3": Counter(s[1:3] for s in samples),
            "repeats": Counter((s[2] in s[:2], s[3] in s[:3]) for s in samples)}


@pytest.fixture(scope="module")
def reference(model_dir):
    samples, _ = draw(model_dir, 0, range(NUM_DRAWS))
    assert all(len(s) == 4 for s in samples)
    return samples


def test_speculative_sampling_draws_from_the_target_distribution(model_dir, reference):
    samples, llm = draw(model_dir, 2, range(NUM_DRAWS, 2 * NUM_DRAWS), conditional_modes(reference))
    stats = llm.engine.scheduler.spec_decode_stats
    assert stats.num_drafts >= NUM_DRAWS  # every request verified drafts after its prefill
    assert 0.25 < stats.acceptance_rate < 0.85 and stats.num_accepted_tokens_per_pos[1] > NUM_DRAWS // 10
    ours, theirs = histograms(samples), histograms(reference)
    for name in ours:
        assert chi_square_p_value(ours[name], theirs[name]) > P_MIN, name


def test_the_real_mtp_drafter_also_preserves_the_distribution(model_dir, reference):
    samples, llm = draw(model_dir, 2, range(2 * NUM_DRAWS, 3 * NUM_DRAWS))
    # A random MTP layer is mostly rejected: this run exercises the residual draws of the real drafter's tokens.
    assert llm.engine.scheduler.spec_decode_stats.num_accepted_tokens > 0
    ours, theirs = histograms(samples), histograms(reference)
    for name in ours:
        assert chi_square_p_value(ours[name], theirs[name]) > P_MIN, name


def test_the_chi_square_test_catches_penalties_that_ignore_earlier_drafts(model_dir, reference, monkeypatch):
    monkeypatch.setattr(model_runner, "SamplingRow", lambda state, draft_token_ids=(): SamplingRow(state))
    samples, _ = draw(model_dir, 2, range(NUM_DRAWS, 2 * NUM_DRAWS), conditional_modes(reference))
    ours, theirs = histograms(samples), histograms(reference)
    assert min(chi_square_p_value(ours[name], theirs[name]) for name in ours) < P_MIN
