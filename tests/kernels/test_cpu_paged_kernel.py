"""What the C++ CPU kernel adds to the paged contract (its agreement with the reference is in
test_torch_paged_attention.py): rows computed independently of the batch and of the other rows, one kernel group
per step for the few-row sequences, and errors instead of wild reads."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from paged_testing import make_paged_batch

from kernels.attention.base import AttentionMetadata
from kernels.attention.cpu_paged import CpuPagedAttention, _KernelGroup, load_cpu_kernel
from kernels.attention.dense import causal_attention
from kernels.attention.torch_paged import TorchPagedAttention, _PaddedGroup

MIXED = [(1, 9), (12, 30), (4, 11), (23, 23), (1, 2), (9, 9)]


def attend(backend: CpuPagedAttention, batch) -> torch.Tensor:
    backend.plan(batch.metadata)
    return backend.forward(0, batch.q, batch.k, batch.v)


def rows_of(batch, seq: int) -> slice:
    starts = batch.metadata.query_start_loc.tolist()
    return slice(starts[seq], starts[seq + 1])


def test_a_verify_row_equals_that_position_decoded_alone_to_the_last_bit() -> None:
    """Speculative verify rows must give the tokens plain decoding gives: same bits, whatever the neighbours."""
    verify = make_paged_batch([(1, 7), (4, 30), (2, 5)], seed=1)
    backend = CpuPagedAttention(4, 2, 16, verify.scale, verify.kv_caches)
    together = attend(backend, verify)
    table = verify.metadata.block_tables[1:2]
    for i in range(4):  # row i of the 4-row sequence sits at position 26 + i: decode it alone with that context
        position, row = 26 + i, rows_of(verify, 1).start + i
        slot = int(table[0, position // 4]) * 4 + position % 4
        alone = AttentionMetadata(
            query_start_loc=torch.tensor([0, 1], dtype=torch.int32), seq_lens=torch.tensor([position + 1]),
            query_lens_cpu=(1,), seq_lens_cpu=(position + 1,), slot_mapping=torch.tensor([slot]), block_tables=table)
        backend.plan(alone)  # the cache already holds the verify rows' K/V: rewriting row i's changes nothing
        out = backend.forward(0, verify.q[row : row + 1], verify.k[row : row + 1], verify.v[row : row + 1])
        assert torch.equal(out[0], together[row]), i


def test_two_threads_give_the_bits_of_one() -> None:
    batch = make_paged_batch([(1, n) for n in (3, 40, 7, 65, 2, 33)] + [(4, 20)], seed=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = attend(CpuPagedAttention(4, 2, 16, batch.scale, batch.kv_caches), batch)
        torch.set_num_threads(2)
        two = attend(CpuPagedAttention(4, 2, 16, batch.scale, batch.kv_caches), batch)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_few_row_sequences_share_one_kernel_call_and_the_rest_keep_the_torch_plan() -> None:
    decode = make_paged_batch([(1, n) for n in (3, 40, 7, 65)])
    backend = CpuPagedAttention(4, 2, 16, decode.scale, decode.kv_caches)
    backend.plan(decode.metadata)
    (part,) = backend._plan.parts
    assert isinstance(part, _KernelGroup) and part.query_rows is None  # the whole batch, in order: no gather
    mixed = make_paged_batch(MIXED)
    backend.plan(mixed.metadata)
    kernel_parts = [p for p in backend._plan.parts if isinstance(p, _KernelGroup)]
    torch_plan = TorchPagedAttention(4, 2, 16, mixed.scale, mixed.kv_caches)
    torch_plan.plan(mixed.metadata)
    assert len(kernel_parts) == 1 and kernel_parts[0].query_rows.tolist() == [0, 13, 14, 15, 16, 40]
    others = [type(p) for p in backend._plan.parts if not isinstance(p, _KernelGroup)]
    assert others == [type(p) for p in torch_plan._plan.parts if not (isinstance(p, _PaddedGroup) and p.is_folded)]
    assert others  # the 12-, 23- and 9-row sequences


def test_a_block_id_outside_the_cache_raises_instead_of_reading_it() -> None:
    batch = make_paged_batch([(1, 9), (1, 5)])
    table = batch.metadata.block_tables.clone()
    table[1, 0] = batch.kv_caches[0].shape[0] + 5
    backend = CpuPagedAttention(4, 2, 16, batch.scale, batch.kv_caches)
    backend.plan(dataclasses.replace(batch.metadata, block_tables=table, slot_mapping=torch.tensor([0, 1])))
    with pytest.raises(RuntimeError, match=r"block_tables\[1, 0\] = \d+ is not a block of the cache"):
        backend.forward(0, batch.q, batch.k, batch.v)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(q=lambda a: a.double()), "q must be a contiguous float32 .* for a Float cache"),
        (dict(q=lambda a: a.transpose(0, 1).contiguous().transpose(0, 1)), "q must be a contiguous"),
        (dict(query_start=lambda a: a.int()), "query_start must be"),
        (dict(query_start=lambda a: a[:-1]), "query_start has"),
        (dict(seq_lens=lambda a: a + 100), "do not fit"),
        (dict(block_tables=lambda a: a.long()), "block_tables must be"),
    ],
)
def test_the_kernel_names_a_bad_argument(change, match) -> None:
    batch = make_paged_batch([(1, 9), (2, 5)])
    args = dict(q=batch.q, query_start=torch.tensor([0, 1, 3]), seq_lens=torch.tensor([9, 5]),
                block_tables=batch.metadata.block_tables.contiguous())
    (name, edit), = change.items()
    args[name] = edit(args[name])
    out = torch.empty(3, 4, 16)
    with pytest.raises(RuntimeError, match=match):
        load_cpu_kernel().paged_attention_decode(args["q"], batch.kv_caches[0], out, args["query_start"],
                                                 args["seq_lens"], args["block_tables"], batch.scale)


@pytest.mark.parametrize("backend_cls", [CpuPagedAttention, TorchPagedAttention], ids=["cpu", "torch"])
def test_a_float64_cache_is_attended_in_float64(backend_cls) -> None:
    """The float64 engine tests prove the engine against transformers token for token: both backends stay float64
    (the torch backend's decode softmax used to run in float32)."""
    batch = make_paged_batch(MIXED, dtype=torch.float64, seed=4)
    ours = attend(backend_cls(4, 2, 16, batch.scale, batch.kv_caches), batch)
    expected, start = [], 0
    for b, n in enumerate(batch.metadata.query_lens_cpu):  # batch.expected() works in float32: redo it in float64
        rows = slice(start, start + n)
        keys, values = (torch.cat([prefix[0][b], new[rows]]) for prefix, new in
                        ((batch.prefix_k, batch.k), (batch.prefix_v, batch.v)))
        expected.append(causal_attention(batch.q[rows], keys, values, batch.scale))
        start += n
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, torch.cat(expected), atol=1e-12, rtol=1e-12)


def test_a_failed_build_is_reported_in_one_line_naming_what_the_compiler_said(monkeypatch) -> None:
    from kernels.attention import cpu_paged

    log = ("Error building extension 'glm_serve_x': [1/2] c++ -MMD -O3 -c paged_attention_cpu.cpp\n"
           "FAILED: paged_attention_cpu.o\nc++ -MMD -O3 -c paged_attention_cpu.cpp\n/bin/sh: 1: c++: not found\n"
           "ninja: build stopped: subcommand failed.")

    def fail():
        raise RuntimeError(log)

    monkeypatch.setattr(cpu_paged, "load_cpu_kernel", fail)
    assert cpu_paged.cpu_kernel_error.__wrapped__() == (
        "RuntimeError: Error building extension 'glm_serve_x' | /bin/sh: 1: c++: not found")
