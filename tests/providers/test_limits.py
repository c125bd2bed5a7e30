"""Token buckets and per-keystore limits, with an injected clock (no real sleeps)."""

from __future__ import annotations

import asyncio
import bisect

import pytest

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType
from keyorch.providers.limits import (
    DEFAULT_LIMITS,
    KeystoreLimiter,
    ProviderLimits,
    QuotaGroup,
    TokenBucket,
    limits_for,
    per_window,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_bucket_allows_the_burst_then_spaces_requests_by_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # reservations queue up first come first served: 1/4 s apart
    assert [bucket.reserve() for _ in range(3)] == [0.25, 0.5, 0.75]
    assert bucket.available == -3.0


def test_bucket_refills_over_time_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    bucket.reserve()
    bucket.reserve()
    clock.now += 0.5
    assert bucket.available == pytest.approx(1.0)
    assert bucket.reserve() == 0.0
    clock.now += 3600
    assert bucket.available == 2.0  # never more than the burst
    assert [bucket.reserve(), bucket.reserve(), bucket.reserve()] == [0.0, 0.0, 0.5]


def test_bucket_refund_and_validation() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    bucket.reserve()
    assert bucket.reserve() == 1.0
    bucket.refund()
    assert bucket.reserve() == 1.0  # the refunded place is taken again
    with pytest.raises(ValueError):
        TokenBucket(rate=0.0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1.0, burst=0)


@pytest.mark.parametrize(("limit", "window"), [(5, 1.0), (20, 10.0), (300, 60.0), (4000, 10.0), (2000, 1.0)])
def test_per_window_never_exceeds_the_quota_in_any_window(limit: int, window: float) -> None:
    group = per_window("q", limit, window, frozenset({"op"}))
    clock = FakeClock()
    bucket = TokenBucket(group.rate_per_second, group.burst, clock=clock)
    # a greedy caller sends whenever allowed for three windows; count what each window admits
    admitted: list[float] = []
    end = clock.now + 3 * window
    while clock.now < end:
        wait = bucket.reserve()
        clock.now += wait
        admitted.append(clock.now)
    for i, t0 in enumerate(admitted):
        in_window = bisect.bisect_left(admitted, t0 + window) - i
        assert in_window <= limit, (t0, in_window)
    assert len(admitted) >= 2.5 * limit * 0.85  # and it still uses most of the quota


async def test_limiter_applies_group_and_keystore_buckets() -> None:
    clock = FakeClock()
    limits = ProviderLimits(
        rate_per_second=10.0,
        burst=10,
        max_concurrency=4,
        quotas=(QuotaGroup("create", 1.0, 1, frozenset({"CreateKey"})),),
    )
    limiter = KeystoreLimiter(limits, clock=clock, sleep=clock.sleep)
    assert limiter.limited
    await limiter.acquire("CreateKey")
    await limiter.acquire("CreateKey")
    assert clock.sleeps == [1.0]  # the group's 1/s
    # the keystore bucket refilled to 10 during that second; operations outside a group use only it
    await limiter.acquire("DescribeKey")
    for _ in range(9):
        await limiter.acquire("ListKeys")
    assert clock.sleeps == [1.0]
    await limiter.acquire("ListKeys")
    assert clock.sleeps == [1.0, pytest.approx(0.1)]


async def test_limiter_without_buckets_is_free() -> None:
    clock = FakeClock()
    limiter = KeystoreLimiter(ProviderLimits(None, 1, 8), clock=clock, sleep=clock.sleep)
    assert not limiter.limited
    for _ in range(1000):
        await limiter.acquire("anything")
    assert clock.sleeps == []


async def test_cancelled_waiter_gives_its_token_back() -> None:
    clock = FakeClock()
    started = asyncio.Event()

    async def never(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    limiter = KeystoreLimiter(ProviderLimits(1.0, 1, 2), clock=clock, sleep=never)
    await limiter.acquire("x")
    task = asyncio.create_task(limiter.acquire("x"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    bucket = limiter._buckets[""][0]
    assert bucket.available == 0.0  # the cancelled reservation (-1) was refunded


async def test_concurrency_slots_cap_requests_in_flight() -> None:
    limiter = KeystoreLimiter(ProviderLimits(None, 1, 3))
    in_flight = 0
    peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with limiter.slots:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(20)))
    assert peak == 3


def test_defaults_follow_the_published_quotas() -> None:
    assert set(DEFAULT_LIMITS) == set(KeystoreType)

    aws = DEFAULT_LIMITS[KeystoreType.AWS_KMS]
    groups = {g.name: g for g in aws.quotas}
    assert aws.rate_per_second is None  # AWS quotas are per operation
    assert groups["CreateKey"].operations == frozenset({"CreateKey"})
    for name in ("CreateKey", "EnableKey", "DisableKey", "ScheduleKeyDeletion"):
        g = groups[name]
        assert g.burst + g.rate_per_second <= 5  # 5 requests per second
    assert groups["DescribeKey"].burst + groups["DescribeKey"].rate_per_second <= 2000

    azure = DEFAULT_LIMITS[KeystoreType.AZURE_KEY_VAULT]
    assert azure.rate_per_second is not None
    assert azure.burst + azure.rate_per_second * 10 <= 4000  # other operations: 4,000 per 10 s
    (create,) = azure.quotas
    assert create.operations == frozenset({"CreateKey"})
    assert create.burst + create.rate_per_second * 10 <= 20  # CREATE: 20 per 10 s

    gcp = {g.name: g for g in DEFAULT_LIMITS[KeystoreType.GOOGLE_KMS].quotas}
    for name in ("read", "write"):
        assert gcp[name].burst + gcp[name].rate_per_second * 60 <= 300  # 300 per minute
    assert "cryptoKeys.list" in gcp["read"].operations
    assert "cryptoKeyVersions.destroy" in gcp["write"].operations

    ibm = DEFAULT_LIMITS[KeystoreType.IBM_KEY_PROTECT]
    assert (ibm.rate_per_second, ibm.burst) == (20.0, 20)


def test_keystore_settings_override_the_defaults() -> None:
    limits = limits_for(KeystoreType.AWS_KMS, {"rate_per_second": 50, "max_concurrency": 64})
    assert (limits.rate_per_second, limits.burst, limits.max_concurrency) == (50, 50, 64)
    assert limits.quotas  # per-operation quotas stay unless turned off
    limits = limits_for(KeystoreType.AZURE_KEY_VAULT, {"rate_per_second": 2.5, "burst": 7, "provider_quotas": False})
    assert (limits.rate_per_second, limits.burst, limits.quotas) == (2.5, 7, ())
    limits = limits_for(KeystoreType.IBM_KEY_PROTECT, {"rate_per_second": 0})
    assert limits.rate_per_second is None  # 0 = no keystore-wide bucket
    assert limits_for(KeystoreType.IBM_KEY_PROTECT, {"rate_per_second": 0.1}).rate_per_second == 0.1  # the floor
    assert limits_for(KeystoreType.GOOGLE_KMS) == DEFAULT_LIMITS[KeystoreType.GOOGLE_KMS]


@pytest.mark.parametrize(
    ("settings", "target"),
    [
        ({"rate_per_second": -1}, "rate_per_second"),
        ({"rate_per_second": "fast"}, "rate_per_second"),
        ({"rate_per_second": True}, "rate_per_second"),
        ({"rate_per_second": float("nan")}, "rate_per_second"),
        ({"rate_per_second": 1e-9}, "rate_per_second"),  # one request in 30 years: a stalled keystore
        ({"rate_per_second": 0.09}, "rate_per_second"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 5000}, "max_concurrency"),
        ({"provider_quotas": "no"}, "provider_quotas"),
    ],
)
def test_bad_overrides_name_the_setting(settings: dict[str, object], target: str) -> None:
    with pytest.raises(InvalidInput) as info:
        limits_for(KeystoreType.IBM_KEY_PROTECT, settings)
    assert info.value.target == target
    assert target in info.value.message


def test_provider_limits_validation() -> None:
    with pytest.raises(ValueError):
        ProviderLimits(rate_per_second=0.0, burst=1, max_concurrency=1)
    with pytest.raises(ValueError):
        ProviderLimits(rate_per_second=None, burst=1, max_concurrency=0)
