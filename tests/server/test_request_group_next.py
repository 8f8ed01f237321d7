"""RequestGroup.next: outputs in order, None after an idle timeout (SSE keep-alive), engine errors raised."""

import asyncio

import pytest

from engine.outputs import EngineCoreOutput
from server.async_engine import EngineDeadError, RequestGroup, StepOutput


def _step(request_id: str, token: int, finish: str | None = None) -> StepOutput:
    return StepOutput(EngineCoreOutput(request_id, (token,), None, finish_reason=finish), 0.0, None)


def test_next_waits_times_out_and_finishes():
    async def scenario() -> list:
        group = RequestGroup(engine=None, child_ids=("a",))  # type: ignore[arg-type]
        seen = [await group.next(timeout=0.01)]  # nothing queued: the keep-alive timeout answers None
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, group.queue.put_nowait, _step("a", 7))
        seen.append(await group.next(timeout=5))  # arrives while waiting under a timeout
        group.queue.put_nowait(_step("a", 8, finish="length"))
        seen.append(await group.next())
        return [s if s is None else s.output.new_token_ids for s in seen] + [group.is_done]

    assert asyncio.run(scenario()) == [None, (7,), (8,), True]


def test_next_raises_a_queued_engine_error():
    async def scenario() -> None:
        group = RequestGroup(engine=None, child_ids=("a",))  # type: ignore[arg-type]
        asyncio.get_running_loop().call_later(0.01, group.queue.put_nowait, EngineDeadError("gone"))
        await group.next(timeout=5)

    with pytest.raises(EngineDeadError, match="gone"):
        asyncio.run(scenario())
