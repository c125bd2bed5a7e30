"""Per-keystore request limits: a token bucket for the request rate and a cap on requests in flight.

Each keystore gets one :class:`KeystoreLimiter` built from a :class:`ProviderLimits`:

* a keystore-wide token bucket (``rate_per_second``, ``burst``; ``None`` rate = no keystore-wide cap),
* optional :class:`QuotaGroup` buckets for operations the provider limits more tightly, keyed by the
  ``operation`` name the adapter passes to the transport (AWS: the ``X-Amz-Target`` operation name,
  e.g. ``CreateKey``; Azure: the REST operation id, e.g. ``CreateKey``; Google: ``collection.method``
  as in the REST reference, e.g. ``cryptoKeyVersions.patch``). An operation in a group takes a token
  from the group's bucket and from the keystore-wide one,
* a semaphore of ``max_concurrency`` requests in flight (the connection pool is sized to match).

Defaults follow each provider's published request quotas, converted by :func:`per_window` into a
bucket that never lets more than the quota through in any quota window, with a tenth of the quota
as the burst, so that keyorch stays below the quota even when the provider counts in fixed windows:

* AWS KMS (developer guide, "Request quotas", requests per second per account and Region, adjustable;
  docs/providers.md §1.5): ``CreateKey``, ``EnableKey``, ``DisableKey``,
  ``ScheduleKeyDeletion``, ``CancelKeyDeletion`` and ``CreateAlias`` 5/s each; ``DescribeKey`` 2,000/s.
  AWS has no keystore-wide quota, so the keystore-wide bucket is off.
* Azure Key Vault (docs/providers.md §2.5, per vault per region per 10 s, software keys): CREATE 20,
  all other operations 4,000. (HSM keys: 10 and 2,000; lower them with the settings below.)
* Google Cloud KMS (Cloud KMS "Quotas", calling project): read requests 300 per minute, write
  requests 300 per minute (docs/providers.md §3.5).
* IBM Key Protect publishes no request quota (docs/providers.md §4.5: a 429 "not in the error catalogue"),
  so keyorch keeps to 20 requests/s with a burst of 20 per instance, its own conservative choice.

Keystore settings override the defaults: ``rate_per_second`` (0 turns the keystore-wide bucket
off; otherwise at least 0.1, one request per 10 s: a slower keystore would stall every pass),
``burst``, ``max_concurrency``, and ``provider_quotas: false`` to drop the per-operation
groups (for the fake services and benchmarks).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType

MAX_CONCURRENCY_LIMIT = 1024

#: The longest one keystore call may take, every attempt and wait included (the keystore setting
#: ``call_timeout_seconds``, or ``reconcile.call_timeout_seconds`` for every keystore), and its range.
DEFAULT_CALL_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_RANGE = (1.0, 3600.0)
#: The longest a reconcile pass waits for one keystore's health check, and again for its listing
#: (``reconcile.listing_timeout_seconds``), and its range.
DEFAULT_LISTING_TIMEOUT_SECONDS = 300.0
LISTING_TIMEOUT_RANGE = (1.0, 86400.0)


#: The lowest keystore-wide rate a keystore may set (one request per 10 s); 0 means no cap.
MIN_RATE_PER_SECOND = 0.1


@dataclass(frozen=True)
class QuotaGroup:
    """Operations that share one provider quota, and the bucket that keeps below it."""

    name: str
    rate_per_second: float
    burst: int
    operations: frozenset[str]


def per_window(name: str, limit: float, window_seconds: float, operations: frozenset[str]) -> QuotaGroup:
    """A group that lets at most ``limit`` requests through in any ``window_seconds``.

    A bucket admits at most ``burst + rate * window`` requests in a window; the burst is a tenth
    of the limit (at least 1) and the rate the rest spread over the window.
    """
    burst = max(1, math.floor(limit / 10))
    return QuotaGroup(name, (limit - burst) / window_seconds, burst, operations)


@dataclass(frozen=True)
class ProviderLimits:
    """Rate and concurrency limits of one keystore."""

    rate_per_second: float | None
    burst: int
    max_concurrency: int
    quotas: tuple[QuotaGroup, ...] = ()

    def __post_init__(self) -> None:
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive (or None for no keystore-wide cap)")
        if self.burst < 1 or not 1 <= self.max_concurrency <= MAX_CONCURRENCY_LIMIT:
            raise ValueError("burst must be >= 1 and max_concurrency in 1..1024")

    def with_settings(self, settings: Mapping[str, Any]) -> ProviderLimits:
        """These limits with a keystore's overrides applied; raise ``InvalidInput`` naming a bad setting."""
        limits = self
        if "rate_per_second" in settings:
            rate = number_setting(settings, "rate_per_second", minimum=0.0)
            if 0 < rate < MIN_RATE_PER_SECOND:
                raise InvalidInput(
                    f"setting rate_per_second must be 0 (no keystore-wide cap) or at least {MIN_RATE_PER_SECOND:g}"
                    f" requests per second, not {settings['rate_per_second']!r}",
                    target="rate_per_second",
                )
            burst = max(1, math.ceil(rate)) if rate > 0 else limits.burst
            limits = replace(limits, rate_per_second=rate or None, burst=burst)
        if "burst" in settings:
            limits = replace(limits, burst=int(number_setting(settings, "burst", minimum=1, integer=True)))
        if "max_concurrency" in settings:
            value = number_setting(settings, "max_concurrency", minimum=1, maximum=MAX_CONCURRENCY_LIMIT, integer=True)
            limits = replace(limits, max_concurrency=int(value))
        if "provider_quotas" in settings:
            flag = settings["provider_quotas"]
            if not isinstance(flag, bool):
                raise InvalidInput(
                    f"setting provider_quotas must be true or false, not {flag!r}", target="provider_quotas"
                )
            if not flag:
                limits = replace(limits, quotas=())
        return limits


def number_setting(
    settings: Mapping[str, Any], key: str, *, minimum: float, maximum: float | None = None, integer: bool = False
) -> float:
    """``settings[key]`` checked to be a (whole) number in range; ``InvalidInput`` naming the key otherwise."""
    value = settings[key]
    kinds = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum:
        raise InvalidInput(f"setting {key} must be {kinds} >= {minimum:g}, not {value!r}", target=key)
    if maximum is not None and value > maximum:
        raise InvalidInput(f"setting {key} must be at most {maximum:g}, not {value!r}", target=key)
    return float(value)


_AWS_WRITES = ("CreateKey", "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "CreateAlias")
_GCP_READS = frozenset(
    {
        "keyRings.get",
        "keyRings.list",
        "cryptoKeys.get",
        "cryptoKeys.list",
        "cryptoKeyVersions.get",
        "cryptoKeyVersions.list",
        "locations.get",
        "locations.list",
    }
)
_GCP_WRITES = frozenset(
    {
        "keyRings.create",
        "cryptoKeys.create",
        "cryptoKeys.patch",
        "cryptoKeys.updatePrimaryVersion",
        "cryptoKeyVersions.create",
        "cryptoKeyVersions.patch",
        "cryptoKeyVersions.destroy",
        "cryptoKeyVersions.restore",
    }
)
_AZURE_OTHER = per_window("all operations", 4000, 10.0, frozenset())

DEFAULT_LIMITS: dict[KeystoreType, ProviderLimits] = {
    KeystoreType.AWS_KMS: ProviderLimits(
        rate_per_second=None,
        burst=1,
        max_concurrency=32,
        quotas=(
            *(per_window(op, 5, 1.0, frozenset({op})) for op in _AWS_WRITES),
            per_window("DescribeKey", 2000, 1.0, frozenset({"DescribeKey"})),
        ),
    ),
    KeystoreType.AZURE_KEY_VAULT: ProviderLimits(
        rate_per_second=_AZURE_OTHER.rate_per_second,
        burst=_AZURE_OTHER.burst,
        max_concurrency=32,
        quotas=(per_window("create", 20, 10.0, frozenset({"CreateKey"})),),
    ),
    KeystoreType.GOOGLE_KMS: ProviderLimits(
        rate_per_second=None,
        burst=1,
        max_concurrency=16,
        quotas=(per_window("read", 300, 60.0, _GCP_READS), per_window("write", 300, 60.0, _GCP_WRITES)),
    ),
    KeystoreType.IBM_KEY_PROTECT: ProviderLimits(rate_per_second=20.0, burst=20, max_concurrency=16),
}


def limits_for(kind: KeystoreType, settings: Mapping[str, Any] | None = None) -> ProviderLimits:
    """The defaults for a keystore type with the keystore's own overrides applied."""
    return DEFAULT_LIMITS[kind].with_settings(settings or {})


class TokenBucket:
    """A token bucket that hands out reservations: fair (first come, first served) and lock-free.

    :meth:`reserve` always takes a token, letting the count go negative, and returns how long the
    caller must wait before using it; later callers queue behind earlier ones by construction.
    """

    __slots__ = ("_clock", "_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def reserve(self) -> float:
        now = self._clock()
        tokens = self._tokens + (now - self._updated) * self.rate
        self._tokens = (self.burst if tokens > self.burst else tokens) - 1.0
        self._updated = now
        return 0.0 if self._tokens >= 0.0 else -self._tokens / self.rate

    def refund(self) -> None:
        """Give back a reserved token that was not used (its holder was cancelled while waiting)."""
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    @property
    def available(self) -> float:
        """Tokens available now (negative while callers are queued)."""
        return min(float(self.burst), self._tokens + (self._clock() - self._updated) * self.rate)


class KeystoreLimiter:
    """The buckets and the in-flight cap of one keystore."""

    __slots__ = ("_buckets", "_sleep", "limited", "limits", "slots")

    def __init__(
        self,
        limits: ProviderLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self._sleep = sleep
        overall = TokenBucket(limits.rate_per_second, limits.burst, clock=clock) if limits.rate_per_second else None
        buckets: dict[str, tuple[TokenBucket, ...]] = {}
        for group in limits.quotas:
            bucket = TokenBucket(group.rate_per_second, group.burst, clock=clock)
            for operation in group.operations:
                buckets[operation] = (*buckets.get(operation, ()), bucket)
        if overall is not None:
            buckets = {op: (overall, *own) for op, own in buckets.items()}
            buckets[""] = (overall,)
        self._buckets = buckets
        #: False when no bucket applies to any operation: callers may then skip :meth:`acquire`.
        self.limited = bool(buckets)
        #: Requests in flight at most; hold it only while a request is on the wire, never while waiting.
        self.slots = asyncio.Semaphore(limits.max_concurrency)

    def _buckets_for(self, operation: str) -> tuple[TokenBucket, ...]:
        buckets = self._buckets.get(operation)
        return buckets if buckets is not None else self._buckets.get("", ())

    async def acquire(self, operation: str, *, before_wait: Callable[[float], None] | None = None) -> None:
        """Wait until ``operation`` may be sent under every bucket that applies to it; ``before_wait``
        hears how long, before the wait begins (the transport keeps it out of the call's deadline)."""
        buckets = self._buckets_for(operation)
        if not buckets:
            return
        wait = max(bucket.reserve() for bucket in buckets)
        if wait <= 0.0:
            return
        if before_wait is not None:
            before_wait(wait)
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            for bucket in buckets:
                bucket.refund()
            raise
