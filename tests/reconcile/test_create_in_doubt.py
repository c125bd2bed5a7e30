"""A create is "in doubt" (the adapter looks for a key made by an attempt whose answer was lost)
exactly when the target's latest create attempt failed or was interrupted, not after any failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.reconcile.memory_keystore import MemKey, MemoryKeystore, builder_for, one_keystore_store

from keyorch.domain.models import SyncFlag
from keyorch.providers.base import KeyRef, KeySpec, Observation
from keyorch.providers.errors import Timeout
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.reconcile.queue import Backoff
from keyorch.service import keys


@dataclass
class LostAnswerKeystore(MemoryKeystore):
    """Like AWS KMS: the first create makes a key but its answer is lost before the key is named
    (no alias), so reads do not find it; only a create in doubt looks for it and adopts it, and a
    create not in doubt would make a second key."""

    lose_next_create: bool = True
    doubts: list[bool] = field(default_factory=list)
    unnamed: set[str] = field(default_factory=set)

    def _find(self, ref: KeyRef) -> MemKey | None:
        key = super()._find(ref)
        return None if key is None or key.kid in self.unnamed else key

    async def ensure_key(self, managed_key_id: str, spec: KeySpec, *, in_doubt: bool = False) -> Observation:
        self.doubts.append(in_doubt)
        if in_doubt:
            self.unnamed -= {k.kid for k in self.keys.values() if k.managed == managed_key_id}
        observation = await super().ensure_key(managed_key_id, spec, in_doubt=in_doubt)
        if self.lose_next_create:
            self.lose_next_create = False
            self.unnamed.add(observation.key_id_in_keystore)
            raise Timeout("read timed out", keystore=self.name, operation="create")
        return observation


async def test_only_a_failed_create_puts_the_next_one_in_doubt(tmp_path: Path) -> None:
    ctx = await one_keystore_store(tmp_path)
    store = ctx.store
    await keys.create_key(ctx, template="t", label="k0", state="active")
    mem = LostAnswerKeystore("ks")
    pool = ClientPool(store, None, builder=builder_for({"ks": mem}))
    controller = Controller(store, pool, ctx.clock, workers=1, attempts=3, backoff=Backoff(0.001, 0.01))
    try:
        summary = await controller.run_once()
        assert summary.flagged == 0 and summary.exit_code == 0, summary.as_json()
        # The first attempt was not in doubt; its answer was lost, so the retry was.
        assert mem.doubts == [False, True]
        assert mem.calls["created"] == 1

        # Deleted behind keyorch's back, then pushed again: the latest create succeeded, so the
        # re-create is not in doubt even though the target once failed.
        assert mem.tamper((await keys.get_key(ctx, "k0")).id, "destroyed")
        summary = await controller.run_once(refs=["k0"], push=True)
        assert summary.exit_code == 0, summary.as_json()
        assert mem.doubts == [False, True, False]
        async with store.read() as tx:
            key = await tx.key("k0")
        assert [t.sync_flag for t in key.targets] == [SyncFlag.IN_SYNC]
    finally:
        await pool.aclose()
        await store.close()
