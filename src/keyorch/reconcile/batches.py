"""A pass's keys read from the store in batches, just ahead of the workers that reconcile them.

A full pass reconciles every key; reading each one on its own costs a read transaction and three
queries per key, which dominates a pass where everything is already in sync. The workers take
keys in the order the pass queued them, so when a worker asks for a key that no batch has read
yet, the next ``size`` keys from that one on are read together (one transaction, a few queries)
and handed out as the workers reach them.

A batch is read just before its keys are worked on, so what a worker plans from is at most a few
seconds old; and the reconciler checks, in the transaction that journals its intents, that the
key's desired state has not moved since it was read (:meth:`Reconciler.reconcile_key`), so no
provider call acts on an outdated desired state. Retries within the pass read the key afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from keyorch.reconcile.engine import Loaded

DEFAULT_BATCH = 200

LoadMany = Callable[[Sequence[str]], Awaitable[dict[str, Loaded]]]


class KeyBatches:
    def __init__(self, load_many: LoadMany, key_ids: Sequence[str], size: int = DEFAULT_BATCH) -> None:
        if size < 1:
            raise ValueError("a batch holds at least one key")
        self._load_many = load_many
        self._ids = list(key_ids)
        self._position = {key_id: i for i, key_id in enumerate(self._ids)}
        self._size = size
        self._loaded: dict[str, Loaded] = {}
        self._read: set[str] = set()  # ids some batch has asked for (found or not)
        self._lock = asyncio.Lock()
        self.batches_read = 0

    async def take(self, key_id: str) -> Loaded | None:
        """The key as its batch read it, once; ``None`` for a key not in the pass, removed
        meanwhile, or already taken (the caller then reads it itself)."""
        if key_id not in self._read:
            async with self._lock:
                if key_id not in self._read:
                    await self._read_batch(key_id)
        return self._loaded.pop(key_id, None)

    def discard(self, key_id: str) -> None:
        """Forget the key's batched copy (its desired state just changed): its next take reads it afresh."""
        self._read.add(key_id)
        self._loaded.pop(key_id, None)

    async def _read_batch(self, key_id: str) -> None:
        start = self._position.get(key_id)
        if start is None:
            return
        batch = [k for k in self._ids[start : start + self._size] if k not in self._read]
        self._loaded.update(await self._load_many(batch))
        self._read.update(batch)
        self.batches_read += 1
