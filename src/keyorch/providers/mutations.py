"""Which requests that are not idempotent a provider call sent, for the caller that asks.

A rotation either sends one (``RotateKey``, ``RotateKeyOnDemand``, ``cryptoKeyVersions.create``) or finds
the rotation already made and sends none (the adapters' ``rotate(ref, from_version=...)`` once the primary
is no longer the base). Only the adapter's transport sees which: :func:`counting` opens a scope in the
current task (and the tasks it starts), and the transport notes there every not-idempotent request that
may have reached the provider, answered or not. The reconciler counts rotations by outcome so
(``keyorch_rotations_total``). Outside a scope nothing is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SENT: ContextVar[list[str] | None] = ContextVar("keyorch_mutations_sent", default=None)


@contextmanager
def counting() -> Iterator[list[str]]:
    """The operations of the not-idempotent requests sent within this block, in order."""
    sent: list[str] = []
    token = _SENT.set(sent)
    try:
        yield sent
    finally:
        _SENT.reset(token)


def note(operation: str) -> None:
    """A not-idempotent request ``operation`` may have reached the provider (the transport calls this)."""
    sent = _SENT.get()
    if sent is not None:
        sent.append(operation)
