"""LLM(tensor_parallel_size=2) end to end on CPU (gloo): rank 0 schedules and samples, a spawned follower runs its
shard. Greedy tokens of a batch of mixed prompts equal the single-process engine's, with and without expert
parallelism and MTP speculation; a killed follower is a clear error on rank 0, not a hang.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from engine import LLM, SamplingParams
from engine.distributed.executor import WorkerDiedError
from model_factory import make_tiny_model_dir

VOCAB = 1000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_tp"), seed=11)


def make_llm(model_dir, **kwargs) -> LLM:
    return LLM(model=model_dir, dtype=torch.float32, device="cpu", max_model_len=256, num_blocks_override=200,
               max_num_batched_tokens=96, **kwargs)  # a small token budget: chunked prefill across steps


def mixed_batch(seed: int = 0, num: int = 10):
    """Mixed prompt lengths; greedy requests, plus seeded sampled ones (with a penalty, top-p) that only rank 0
    samples: their tokens match TP=1 too (logits agree to ~1e-6, far from any sampling boundary here)."""
    rng = random.Random(seed)
    lengths = [1, 2, 15, 16, 17, 150] + [rng.randint(1, 60) for _ in range(num - 6)]
    prompts = [{"prompt_token_ids": [rng.randrange(4, VOCAB) for _ in range(n)]} for n in lengths]
    params = [SamplingParams(temperature=0, max_tokens=rng.randint(1, 12), ignore_eos=True) for _ in prompts]
    for i in range(1, num, 3):
        params[i] = SamplingParams(temperature=0.8, top_p=0.9, presence_penalty=0.5, seed=i, max_tokens=10,
                                   ignore_eos=True)
    return prompts, params


def generate(llm: LLM, prompts, params) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in llm.generate(prompts, params, use_tqdm=False)]


@pytest.fixture(scope="module")
def reference(model_dir):
    """TP=1 tokens per num_speculative_tokens (a sampled request's random stream depends on speculation; greedy
    requests' tokens do not)."""
    prompts, params = mixed_batch()
    return {k: generate(make_llm(model_dir, num_speculative_tokens=k), prompts, params) for k in (0, 2)}


@pytest.mark.parametrize("expert_parallel, k, async_scheduling", [
    (False, 0, True),  # async: in-flight tokens reach the follower through the input-id broadcast
    (False, 2, False),
    (True, 0, False),
    (True, 2, False),
])
def test_tp2_greedy_tokens_equal_tp1(model_dir, reference, expert_parallel, k, async_scheduling):
    llm = make_llm(model_dir, tensor_parallel_size=2, enable_expert_parallel=expert_parallel,
                   num_speculative_tokens=k, async_scheduling=async_scheduling)
    try:
        prompts, params = mixed_batch()
        tokens = generate(llm, prompts, params)
        assert tokens == reference[k]
        greedy = [i for i, p in enumerate(params) if p.temperature == 0]
        assert [tokens[i] for i in greedy] == [reference[0][i] for i in greedy]
        if k:
            assert llm.engine.scheduler.spec_decode_stats.num_drafts > 0, "speculation never ran"
    finally:
        llm.shutdown()
    assert all(not worker.is_alive() for worker in llm.engine.model_runner.workers)


def test_killed_worker_is_a_clear_error_on_rank0(model_dir):
    llm = make_llm(model_dir, tensor_parallel_size=2)
    try:
        prompts, params = mixed_batch(num=6)
        generate(llm, prompts[:2], params[:2])
        worker = llm.engine.model_runner.workers[0]
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        start = time.monotonic()
        with pytest.raises(WorkerDiedError, match=r"rank 1 \(pid \d+\) died"):
            generate(llm, prompts, params)
        assert time.monotonic() - start < 10
    finally:
        llm.shutdown()


def test_worker_killed_during_startup_fails_fast(model_dir):
    """A follower that dies before the rendezvous (here: killed while importing) is a WorkerDiedError at once, not
    a wait for the process group's timeout."""
    killed: list[int] = []

    def kill_first_follower() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            tasks = Path(f"/proc/{os.getpid()}/task").iterdir()
            for child in [c for task in tasks for c in (task / "children").read_text().split()]:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    os.kill(int(child), signal.SIGKILL)
                    killed.append(int(child))
            time.sleep(0.05)

    start = time.monotonic()
    with pytest.raises(WorkerDiedError, match="rank 1"):
        killer = threading.Thread(target=kill_first_follower, daemon=True)
        killer.start()
        make_llm(model_dir, tensor_parallel_size=2)
    assert killed and time.monotonic() - start < 30
