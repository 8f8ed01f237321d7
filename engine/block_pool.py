"""BlockPool: the fixed set of KV blocks, their reference counts, the LRU free queue and the prefix-cache index.

A block holds the KV of `block_size` consecutive token positions of one or more sequences (shared when prefix
caching finds equal prefixes). Pure Python: block ids index the per-layer KV tensors the model runner allocates.

Life of a block: free (ref 0, in the free queue) -> allocated (ref >= 1, owned by requests) -> freed (ref 0, back at
the END of the free queue). A full block whose tokens are known may be registered in the prefix cache under the
chained hash of its tokens; it stays registered after being freed, so a later request with the same prefix can
take it back (ref 0 -> 1, out of the free queue), until the free queue hands it out again: then it is evicted.
The free queue is LRU: the front (longest free) is reused first.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def hash_block_tokens(parent_hash: bytes | None, token_ids: Sequence[int]) -> bytes:
    """Chained hash of one full block: commits to every token of the prefix that ends with this block.

    NOTE: a 128-bit BLAKE2b digest, so distinct prefixes practically never collide; lookups still compare the
    stored tokens and parent hash, so a collision can cost a cache miss but never return another prefix's KV.
    """
    digest = hashlib.blake2b(parent_hash or b"", digest_size=16)
    digest.update(array("q", token_ids).tobytes())
    return digest.digest()


@dataclass(slots=True, eq=False)
class KVBlock:
    block_id: int  # index into the per-layer KV tensors
    ref_cnt: int = 0  # requests holding this block; 0 means it sits in the free queue
    block_hash: bytes | None = None  # set while registered in the prefix cache
    parent_hash: bytes | None = None  # hash of the previous block of the prefix (verification)
    token_ids: tuple[int, ...] = ()  # the tokens whose KV the block holds, when registered (verification)


class BlockPool:
    def __init__(self, num_blocks: int, enable_caching: bool = True) -> None:
        if num_blocks <= 0:
            raise ValueError(f"num_blocks must be positive, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, KVBlock] = OrderedDict((b.block_id, b) for b in self.blocks)
        self._cached: dict[bytes, KVBlock] = {}  # block hash -> registered block
        self.num_evictions = 0

    @property
    def num_free_blocks(self) -> int:
        """Blocks with ref 0 (cached ones included: they are reclaimable)."""
        return len(self._free)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    @property
    def usage(self) -> float:
        return 1.0 - len(self._free) / self.num_blocks

    def allocate(self, num_blocks: int) -> list[KVBlock]:
        """Take `num_blocks` blocks from the front of the free queue, evicting their cache entries."""
        if num_blocks > len(self._free):
            raise RuntimeError(f"cannot allocate {num_blocks} blocks: only {len(self._free)} free")
        out = []
        for _ in range(num_blocks):
            _, block = self._free.popitem(last=False)
            if block.block_hash is not None:
                self._evict(block)
            block.ref_cnt = 1
            out.append(block)
        return out

    def touch(self, blocks: Iterable[KVBlock]) -> None:
        """Take a reference on prefix-cache hits (a free cached block leaves the free queue)."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self._free[block.block_id]
            block.ref_cnt += 1

    def free(self, blocks: Iterable[KVBlock]) -> None:
        """Drop one reference per block; blocks reaching 0 join the END of the free queue in the order given.

        NOTE: callers pass a request's blocks tail first, so the tail of a prefix is evicted before its head.
        """
        for block in blocks:
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free[block.block_id] = block
            elif block.ref_cnt < 0:
                raise RuntimeError(f"block {block.block_id} freed more often than allocated")

    def lookup(self, block_hash: bytes, parent_hash: bytes | None, token_ids: Sequence[int]) -> KVBlock | None:
        """The registered block for this hash, only if it really holds `token_ids` after the same parent."""
        block = self._cached.get(block_hash)
        if block is None or block.parent_hash != parent_hash or block.token_ids != tuple(token_ids):
            return None
        return block

    def register(self, block: KVBlock, block_hash: bytes, parent_hash: bytes | None, token_ids: Sequence[int]) -> None:
        """Index a full block under its hash. A second block with the same content stays unregistered."""
        if not self.enable_caching or block.block_hash is not None or block_hash in self._cached:
            return
        block.block_hash = block_hash
        block.parent_hash = parent_hash
        block.token_ids = tuple(token_ids)
        self._cached[block_hash] = block

    def reset_prefix_cache(self) -> bool:
        """Forget every registered block; refused (False) while any block is held by a request."""
        if len(self._free) != self.num_blocks:
            return False
        for block in self._cached.values():
            block.block_hash, block.parent_hash, block.token_ids = None, None, ()
        self._cached.clear()
        return True

    def _evict(self, block: KVBlock) -> None:
        assert block.block_hash is not None
        del self._cached[block.block_hash]
        block.block_hash, block.parent_hash, block.token_ids = None, None, ()
        self.num_evictions += 1
