"""MultiprocExecutor: rank 0's side of tensor parallelism, what EngineCore calls instead of a ModelRunner.

Rank 0 owns the scheduler and the sampler (in EngineCore / its ModelRunner) and its own shard of the model. Each
step it broadcasts the `SchedulerOutput` to the followers (engine/distributed/worker.py), then executes the step
on its shard; the model's collectives keep every rank in step. The followers are spawned here on one node
(torch.multiprocessing, "spawn"), or were started by torchrun (multi-node; then this process is RANK 0).

Failure: a follower that dies makes the next step raise `WorkerDiedError` on rank 0 (its process is checked before
every step; a collective that fails or times out mid-step is reported the same way), so the engine loop dies and
the server's health turns 503 instead of hanging.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import socket
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import torch.multiprocessing as mp

from engine.distributed.parallel_state import TensorParallelGroup, destroy_distributed, init_distributed, torchrun_env
from engine.distributed.step_message import encode_step
from engine.distributed.worker import SHUTDOWN, rank_device, spawned_worker_main
from engine.engine_config import EngineConfig
from engine.outputs import SchedulerOutput

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0  # shutdown: how long followers get to exit before they are terminated


class WorkerDiedError(RuntimeError):
    """A tensor-parallel follower is gone (or a collective with it failed): the engine cannot continue."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MultiprocExecutor:
    def __init__(self, runner, tp: TensorParallelGroup, workers: list[BaseProcess]) -> None:
        self.runner = runner  # rank 0's ModelRunner over its shard
        self.tp = tp
        self.workers = workers  # spawned followers (empty under torchrun: nothing to watch from here)
        self._is_shut_down = False
        atexit.register(self.shutdown)

    @classmethod
    def start(cls, config: EngineConfig) -> MultiprocExecutor:
        """Start (or, under torchrun, meet) the followers, join the process group, load rank 0's shard."""
        from engine.loader import load_model
        from engine.model_runner import ModelRunner

        world_size = config.parallel.world_size
        env = torchrun_env()
        workers: list[BaseProcess] = []
        if env is not None:
            if env.world_size != world_size or env.rank != 0:
                raise ValueError(f"tensor_parallel_size={world_size}, but torchrun started rank {env.rank} of "
                                 f"WORLD_SIZE={env.world_size}; they must match and the server runs on rank 0")
            init_method = "env://"
        else:
            _check_gpu_count(config)
            init_method = f"tcp://127.0.0.1:{_free_port()}"
            context = mp.get_context("spawn")
            for rank in range(1, world_size):
                worker = context.Process(target=spawned_worker_main, args=(rank, config, init_method),
                                         name=f"glm-tp-rank{rank}", daemon=True)
                worker.start()
                workers.append(worker)
        config = dataclasses.replace(config, device=rank_device(config, env.local_rank if env else 0))
        try:
            tp = _while_watching(workers, lambda: init_distributed(config.parallel.layout(0), config.device,
                                                                   init_method, config.parallel.distributed_timeout_s))
            runner = ModelRunner(load_model(config.model, dtype=config.dtype, device=config.device, tp=tp), config)
        except BaseException:
            _terminate(workers)
            raise
        logger.info("tensor parallelism: %d ranks (expert parallel: %s), %s", world_size,
                    config.parallel.enable_expert_parallel, "torchrun" if env else "spawned followers")
        return cls(runner, tp, workers)

    def initialize_kv_cache(self) -> int:
        # NOTE: a collective (the block count is the minimum over ranks); the followers call it after loading.
        return self._collectively(self.runner.initialize_kv_cache)

    def execute_model(self, scheduler_output: SchedulerOutput):
        def step():
            self.tp.broadcast_object(encode_step(scheduler_output))
            return self.runner.execute_model(scheduler_output)

        return self._collectively(step)

    def _collectively(self, work):
        """Run work that includes collectives; a dead follower or a failed collective is a WorkerDiedError."""
        _check_alive(self.workers)
        try:
            return work()
        except RuntimeError as error:  # gloo / NCCL: a peer vanished mid-collective, or the collective timed out
            _check_alive(self.workers)
            raise WorkerDiedError(f"a tensor-parallel collective failed: {error}") from error

    def check_workers(self) -> None:
        """Raise WorkerDiedError naming the first spawned follower that is no longer alive."""
        _check_alive(self.workers)

    def shutdown(self) -> None:
        """Stop the followers (a SHUTDOWN broadcast; terminate those that do not exit) and leave the group."""
        if self._is_shut_down:
            return
        self._is_shut_down = True
        atexit.unregister(self.shutdown)
        try:
            if all(worker.is_alive() for worker in self.workers):
                self.tp.broadcast_object(SHUTDOWN)
                self.tp.barrier()
        except RuntimeError as error:
            logger.warning("tensor-parallel shutdown broadcast failed: %s", error)
        for worker in self.workers:
            worker.join(JOIN_TIMEOUT_S)
        _terminate(self.workers)
        self.tp.release()
        destroy_distributed()


def _check_gpu_count(config: EngineConfig) -> None:
    """One node: ranks 0..N-1 use cuda:first..first+N-1, which must all be visible."""
    if config.device.type != "cuda":
        return
    import torch

    needed, visible = (config.device.index or 0) + config.parallel.world_size, torch.cuda.device_count()
    if needed > visible:
        raise ValueError(f"tensor_parallel_size={config.parallel.world_size} on {config.device} needs {needed} "
                         f"visible GPUs, found {visible} (multi-node: launch with torchrun)")


def _check_alive(workers: list[BaseProcess]) -> None:
    for rank, worker in enumerate(workers, start=1):
        if not worker.is_alive():
            raise WorkerDiedError(f"tensor-parallel worker rank {rank} (pid {worker.pid}) died with exit code "
                                  f"{worker.exitcode}; the engine cannot continue")


def _while_watching(workers: list[BaseProcess], join: Callable[[], TensorParallelGroup]) -> TensorParallelGroup:
    """Run the rendezvous `join` while watching the spawned workers: one that dies before it (import error, killed)
    raises WorkerDiedError at once instead of leaving rank 0 waiting for the whole timeout.
    NOTE: the abandoned rendezvous thread stays blocked until its own timeout; the engine is failing anyway."""
    if not workers:
        return join()
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(join())
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append(error)

    thread = threading.Thread(target=target, name="glm-tp-rendezvous", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        if thread.is_alive():
            _check_alive(workers)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _terminate(workers: list[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
            worker.join(JOIN_TIMEOUT_S)
