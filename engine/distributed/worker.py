"""The followers: ranks 1..N-1 load their shard, size their KV cache with rank 0, then execute what rank 0 sends.

Every rank runs the same ModelRunner code over its own shard (engine/model_runner.py); only rank 0 schedules and
samples. Each step rank 0 broadcasts the `SchedulerOutput` (the model runner's inputs, less what only sampling
reads: engine/distributed/step_message.py) and every follower executes it, taking part in the model's collectives; `None` means shut down. A follower that cannot follow (rank 0 gone, a
collective timed out) raises and its process exits non-zero.

Two ways in: `spawned_worker_main` (one node; rank 0 spawned it with torch.multiprocessing) and `torchrun_follower`
(multi-node; every rank was started by torchrun and only rank 0 runs the server).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import torch

from engine.distributed.parallel_state import TensorParallelGroup, destroy_distributed, init_distributed
from engine.distributed.step_message import decode_step
from engine.engine_config import EngineConfig

logger = logging.getLogger(__name__)

SHUTDOWN = None  # what rank 0 broadcasts instead of a SchedulerOutput to stop the followers


def rank_device(config: EngineConfig, local_rank: int) -> torch.device:
    """Rank r of a node uses cuda:local_rank (its own GPU); on CPU every rank uses the CPU."""
    if config.device.type != "cuda":
        return config.device
    base = config.device.index or 0
    return torch.device("cuda", base + local_rank)


def build_rank_runner(config: EngineConfig, tp: TensorParallelGroup):
    """This rank's shard loaded straight from the checkpoint, its ModelRunner, and its KV cache (a collective:
    every rank calls this in the same order)."""
    from engine.loader import load_model
    from engine.model_runner import ModelRunner

    model = load_model(config.model, dtype=config.dtype, device=config.device, tp=tp)
    runner = ModelRunner(model, config)
    runner.initialize_kv_cache()
    return runner


def follow(runner, tp: TensorParallelGroup) -> None:
    """Execute every step rank 0 broadcasts until it sends SHUTDOWN."""
    while True:
        message = tp.broadcast_object(None)
        if message is SHUTDOWN:
            tp.barrier()
            return
        runner.execute_model(decode_step(message))


def _serve_as_follower(config: EngineConfig, rank: int, local_rank: int, init_method: str) -> None:
    config = dataclasses.replace(config, device=rank_device(config, local_rank))
    tp = init_distributed(config.parallel.layout(rank), config.device, init_method,
                          config.parallel.distributed_timeout_s)
    try:
        follow(build_rank_runner(config, tp), tp)
    finally:
        tp.release()
        destroy_distributed()
    # NOTE: a follower that stopped cleanly ends here, skipping interpreter finalization: gloo's threads sometimes
    # abort a process there (SIGABRT, "terminate called without an active exception") after a clean shutdown.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawned_worker_main(rank: int, config: EngineConfig, init_method: str) -> None:
    """Entry point of a worker process spawned by rank 0 on the same node."""
    torch.set_num_threads(max(1, torch.get_num_threads() // config.parallel.world_size))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    _serve_as_follower(config, rank, rank, init_method)


def torchrun_follower(config: EngineConfig) -> None:
    """A non-zero rank started by torchrun: follow rank 0 (which runs the server) until it shuts down."""
    from engine.distributed.parallel_state import torchrun_env

    env = torchrun_env()
    assert env is not None and env.rank != 0, "torchrun_follower runs on ranks 1..N-1 started by torchrun"
    logger.info("rank %d/%d (local rank %d, pid %d) following rank 0", env.rank, env.world_size, env.local_rank,
                os.getpid())
    _serve_as_follower(config, env.rank, env.local_rank, "env://")
