"""BlockPool: reference counts, LRU reuse order, prefix-cache registration, eviction and verification."""

from __future__ import annotations

import pytest

from engine.block_pool import BlockPool, hash_block_tokens


def test_allocate_free_refcounts_and_lru_order():
    pool = BlockPool(4)
    a = pool.allocate(2)
    assert [b.block_id for b in a] == [0, 1] and all(b.ref_cnt == 1 for b in a)
    assert pool.num_free_blocks == 2
    pool.touch([a[0]])  # a second holder
    pool.free(a)
    assert a[0].ref_cnt == 1 and a[1].ref_cnt == 0
    assert pool.num_free_blocks == 3
    # Free queue: 2, 3 (never used) then 1 (just freed): the longest-free block is reused first.
    assert [b.block_id for b in pool.allocate(3)] == [2, 3, 1]
    with pytest.raises(RuntimeError, match="only 0 free"):
        pool.allocate(1)


def test_double_free_is_caught():
    pool = BlockPool(2)
    (block,) = pool.allocate(1)
    pool.free([block])
    with pytest.raises(RuntimeError, match="freed more often"):
        pool.free([block])


def test_chained_hash_commits_to_the_whole_prefix():
    h1 = hash_block_tokens(None, [1, 2])
    assert hash_block_tokens(None, [1, 2]) == h1
    assert hash_block_tokens(h1, [3, 4]) != hash_block_tokens(hash_block_tokens(None, [9, 9]), [3, 4])
    assert hash_block_tokens(None, [1, 2]) != hash_block_tokens(None, [2, 1])
    assert len(h1) == 16


def test_cached_block_survives_free_until_reused():
    pool = BlockPool(2)
    (block,) = pool.allocate(1)
    h = hash_block_tokens(None, [5, 6])
    pool.register(block, h, None, [5, 6])
    pool.free([block])
    assert pool.lookup(h, None, [5, 6]) is block  # still cached while free
    pool.touch([block])  # a hit takes it back out of the free queue
    assert block.ref_cnt == 1 and pool.num_free_blocks == 1
    pool.free([block])
    pool.allocate(2)  # the free queue hands it out again: evicted
    assert pool.lookup(h, None, [5, 6]) is None
    assert pool.num_evictions == 1 and pool.num_cached_blocks == 0


def test_lookup_verifies_tokens_and_parent_on_equal_hash():
    pool = BlockPool(2)
    (block,) = pool.allocate(1)
    forged = b"\x00" * 16  # pretend two different prefixes hash alike
    pool.register(block, forged, None, [1, 2])
    assert pool.lookup(forged, None, [1, 2]) is block
    assert pool.lookup(forged, None, [1, 3]) is None  # other tokens
    assert pool.lookup(forged, b"parent", [1, 2]) is None  # other prefix before it


def test_duplicate_content_keeps_first_registration_and_disabled_cache_registers_nothing():
    pool = BlockPool(3)
    a, b = pool.allocate(2)
    h = hash_block_tokens(None, [7])
    pool.register(a, h, None, [7])
    pool.register(b, h, None, [7])
    assert pool.lookup(h, None, [7]) is a and b.block_hash is None
    off = BlockPool(1, enable_caching=False)
    (c,) = off.allocate(1)
    off.register(c, h, None, [7])
    assert off.lookup(h, None, [7]) is None


def test_reset_prefix_cache_only_when_idle():
    pool = BlockPool(2)
    (block,) = pool.allocate(1)
    pool.register(block, b"h" * 16, None, [1])
    assert not pool.reset_prefix_cache()
    pool.free([block])
    assert pool.reset_prefix_cache() and pool.num_cached_blocks == 0
