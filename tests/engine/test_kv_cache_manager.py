"""KVCacheManager: block tables, prefix-cache hits (shared, verified, LRU-evicted), all-or-nothing allocation."""

from __future__ import annotations

from engine import block_pool, kv_cache_manager
from engine.kv_cache_manager import KVCacheManager
from engine.request import Request
from engine.sampling_params import SamplingParams

BS = 4


def make_request(request_id: str, prompt: list[int]) -> Request:
    return Request(request_id, tuple(prompt), SamplingParams(), frozenset(), max_tokens=16)


def admit(kv: KVCacheManager, request: Request) -> int:
    blocks, num_hit = kv.get_computed_blocks(request)
    assert kv.allocate_slots(request, request.num_tokens - num_hit, blocks)
    request.num_computed_tokens = request.num_tokens
    return num_hit


def test_block_table_grows_with_tokens():
    kv = KVCacheManager(8, BS)
    r = make_request("a", list(range(5)))
    assert admit(kv, r) == 0
    assert len(kv.block_ids("a")) == 2
    r.all_token_ids += [9, 9, 9]  # decode up to 8 tokens: still 2 blocks
    assert kv.allocate_slots(r, 3)
    assert len(kv.block_ids("a")) == 2
    r.num_computed_tokens = 8
    r.all_token_ids.append(9)
    assert kv.allocate_slots(r, 1)
    assert len(kv.block_ids("a")) == 3 and kv.num_free_blocks == 5


def test_prefix_hit_shares_blocks_and_leaves_one_token_to_compute():
    kv = KVCacheManager(16, BS)
    system = list(range(100, 108))  # two full blocks
    a = make_request("a", system + [1, 2, 3])
    admit(kv, a)
    b = make_request("b", system + [4, 5])
    assert admit(kv, b) == 8
    assert kv.block_ids("b")[:2] == kv.block_ids("a")[:2]
    assert kv.block_ids("b")[2] != kv.block_ids("a")[2]
    c = make_request("c", system)  # the whole prompt is cached: the last block is recomputed for its logits
    assert admit(kv, c) == 4
    assert kv.pool.blocks[kv.block_ids("a")[0]].ref_cnt == 3
    kv.free(a), kv.free(b), kv.free(c)
    assert kv.num_free_blocks == 16


def test_freed_prefix_is_reused_until_evicted():
    kv = KVCacheManager(4, BS)
    a = make_request("a", list(range(9)))  # 3 blocks, 2 full
    admit(kv, a)
    kv.free(a)
    b = make_request("b", list(range(9)))
    assert admit(kv, b) == 8  # both full blocks come back from the free queue
    kv.free(b)
    big = make_request("big", list(range(50, 66)))  # 4 blocks: takes every block, evicting the cached ones
    admit(kv, big)
    kv.free(big)
    c = make_request("c", list(range(9)))
    assert admit(kv, c) == 0


def test_allocation_is_all_or_nothing():
    kv = KVCacheManager(3, BS)
    a = make_request("a", list(range(8)))
    admit(kv, a)
    b = make_request("b", list(range(20, 29)))  # needs 3 blocks, 1 free
    assert not kv.allocate_slots(b, 9)
    assert kv.num_free_blocks == 1 and kv.block_ids("b") == []
    # A hit on a free cached block counts against the free blocks it would take out of the queue.
    kv.free(a)
    c = make_request("c", list(range(8)) + [1, 2, 3, 4, 5])  # hits a's 2 blocks, needs 2 more: 4 > 3
    blocks, num_hit = kv.get_computed_blocks(c)
    assert num_hit == 8
    assert not kv.allocate_slots(c, 5, blocks)
    assert kv.num_free_blocks == 3 and all(blk.ref_cnt == 0 for blk in blocks)


def test_hash_collision_never_returns_wrong_blocks(monkeypatch):
    # Every block hashes alike: the stored tokens must still tell prefixes apart.
    monkeypatch.setattr(kv_cache_manager, "hash_block_tokens", lambda parent, tokens: b"\x01" * 16)
    kv = KVCacheManager(8, BS)
    admit(kv, make_request("a", [1, 2, 3, 4, 5]))
    b = make_request("b", [9, 9, 9, 9, 5])
    assert admit(kv, b) == 0
    assert kv.block_ids("b")[0] != kv.block_ids("a")[0]
    assert block_pool.hash_block_tokens(None, [1]) != b"\x01" * 16  # the real function is untouched


def test_prefix_caching_off():
    kv = KVCacheManager(8, BS, enable_prefix_caching=False)
    admit(kv, make_request("a", list(range(9))))
    assert admit(kv, make_request("b", list(range(9)))) == 0
    assert kv.pool.num_cached_blocks == 0
