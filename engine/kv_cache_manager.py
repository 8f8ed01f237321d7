"""KVCacheManager: each request's block table, prefix-cache hits and slot allocation, over one BlockPool.

Contract with the scheduler:
- `get_computed_blocks(request)` once at admission: the longest run of registered full blocks equal to the
  request's prefix (never its whole sequence: at least one token is left to compute, which yields the logits).
- `allocate_slots(request, num_new_tokens, computed_blocks, num_lookahead_tokens)` before each step: makes room
  for positions [0, num_computed_tokens + hit + num_new_tokens + num_lookahead_tokens); returns False, changing
  nothing, when the pool is short. Lookahead slots hold the MTP proposer's draft-step KV, written after the step.
- `free(request)` when it finishes, is aborted or is preempted: every block it holds returns to the pool.

NOTE: blocks are registered in the prefix cache as soon as their tokens are known and scheduled, before the step
that writes their KV has run. A request admitted in the same step may then hit them: this is correct because
every attention backend writes the step's new K/V into the cache before it attends (kernels/attention/base.py),
and steps run in order on the device.

NOTE (speculative decoding): only known tokens (`all_token_ids`, never drafts) are registered, so KV written for
rejected drafts never enters the prefix cache. After a rollback the request keeps its tail blocks (they hold no
committed KV and no registered hash); its next step reuses them, and `free` returns them with the rest.
"""

from __future__ import annotations

from engine.block_pool import BlockPool, KVBlock, hash_block_tokens
from engine.request import Request


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks, enable_caching=enable_prefix_caching)
        self._blocks: dict[str, list[KVBlock]] = {}  # request id -> its blocks, position order
        self._block_ids: dict[str, list[int]] = {}  # request id -> the same blocks' ids (the block table)
        self._num_registered: dict[str, int] = {}  # request id -> leading blocks already offered to the cache
        self.num_queried_tokens = 0  # prefix-cache statistics over admissions (tokens looked up / found)
        self.num_hit_tokens = 0

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free_blocks

    @property
    def usage(self) -> float:
        return self.pool.usage

    def block_ids(self, request_id: str) -> list[int]:
        """The request's block table (a live list: copy it to keep it)."""
        return self._block_ids.get(request_id, [])

    def num_blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def get_computed_blocks(self, request: Request) -> tuple[list[KVBlock], int]:
        """Prefix-cache hit for a request that holds no blocks: (blocks, number of tokens they cover)."""
        if not self.enable_prefix_caching:
            return [], 0
        hashes = self._update_hashes(request)
        max_blocks = (request.num_tokens - 1) // self.block_size  # keep >= 1 token to compute
        hits: list[KVBlock] = []
        parent: bytes | None = None
        bs = self.block_size
        for i in range(min(max_blocks, len(hashes))):
            block = self.pool.lookup(hashes[i], parent, request.all_token_ids[i * bs : (i + 1) * bs])
            if block is None:
                break
            hits.append(block)
            parent = hashes[i]
        return hits, len(hits) * bs

    def allocate_slots(self, request: Request, num_new_tokens: int, computed_blocks: list[KVBlock] | None = None,
                       num_lookahead_tokens: int = 0) -> bool:
        """Hold blocks for positions [0, num_computed_tokens + len(computed_blocks) * block_size + num_new_tokens
        + num_lookahead_tokens)."""
        computed_blocks = computed_blocks or []
        blocks = self._blocks.get(request.request_id)
        num_held = (len(blocks) if blocks else 0) + len(computed_blocks)
        num_total = request.num_computed_tokens + len(computed_blocks) * self.block_size + num_new_tokens
        num_new_blocks = max(0, self.num_blocks_needed(num_total + num_lookahead_tokens) - num_held)
        num_reclaimed = sum(1 for b in computed_blocks if b.ref_cnt == 0)  # free cached hits leave the free queue
        if num_new_blocks + num_reclaimed > self.pool.num_free_blocks:
            return False
        if blocks is None:
            blocks = self._blocks[request.request_id] = []
            self._block_ids[request.request_id] = []
            self._num_registered[request.request_id] = 0
        ids = self._block_ids[request.request_id]
        if request.num_computed_tokens == 0 and num_held == len(computed_blocks):  # admission
            self.num_queried_tokens += request.num_tokens
            self.num_hit_tokens += len(computed_blocks) * self.block_size
        if computed_blocks:
            self.pool.touch(computed_blocks)
            blocks.extend(computed_blocks)
            ids.extend(b.block_id for b in computed_blocks)
            self._num_registered[request.request_id] = len(blocks)
        if num_new_blocks:
            new_blocks = self.pool.allocate(num_new_blocks)
            blocks.extend(new_blocks)
            ids.extend(b.block_id for b in new_blocks)
        if self.enable_prefix_caching:
            self._register_full_blocks(request, blocks, min(num_total, request.num_tokens))
        return True

    def free(self, request: Request) -> None:
        """Return every block of the request to the pool (tail first, so prefixes' heads stay cached longest)."""
        blocks = self._blocks.pop(request.request_id, None)
        self._block_ids.pop(request.request_id, None)
        self._num_registered.pop(request.request_id, None)
        if blocks:
            self.pool.free(reversed(blocks))

    def _register_full_blocks(self, request: Request, blocks: list[KVBlock], num_known_tokens: int) -> None:
        start = self._num_registered[request.request_id]
        num_full = num_known_tokens // self.block_size
        if num_full <= start:
            return
        hashes = self._update_hashes(request)
        bs = self.block_size
        for i in range(start, num_full):
            parent = hashes[i - 1] if i else None
            self.pool.register(blocks[i], hashes[i], parent, request.all_token_ids[i * bs : (i + 1) * bs])
        self._num_registered[request.request_id] = num_full

    def _update_hashes(self, request: Request) -> list[bytes]:
        """Extend request.block_hashes to every full block of its known tokens."""
        hashes = request.block_hashes
        bs = self.block_size
        tokens = request.all_token_ids
        for i in range(len(hashes), len(tokens) // bs):
            hashes.append(hash_block_tokens(hashes[i - 1] if i else None, tokens[i * bs : (i + 1) * bs]))
        return hashes
