"""The retry policy: exact attempt counts and waits, with an injected clock and sleep (no real sleeping)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from keyorch.domain.models import KeystoreType
from keyorch.providers.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    ProviderError,
    Throttled,
    Timeout,
    Unavailable,
)
from keyorch.providers.retry import (
    DEFAULT_RETRY_POLICIES,
    RetryEvent,
    RetryPolicy,
    RetryStats,
    call_checked,
    call_with_retry,
    in_doubt,
    may_retry,
    retry_policy_for,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(fake: FakeTime, **kwargs: Any) -> RetryPolicy:
    base = RetryPolicy(
        max_attempts=4,
        base_delay_seconds=0.5,
        max_delay_seconds=20.0,
        total_timeout_seconds=60.0,
        sleep=fake.sleep,
        clock=fake.clock,
        random=lambda: 1.0,
    )
    return replace(base, **kwargs)


def failing(
    *errors: ProviderError | None, took: float = 0.0, fake: FakeTime | None = None
) -> Callable[[], Awaitable[str]]:
    """A call that raises ``errors`` in turn (``None`` = succeed), then keeps raising the last one."""
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if fake is not None:
            fake.now += took
        error = errors[min(len(calls), len(errors)) - 1]
        if error is None:
            return f"ok after {len(calls)}"
        raise error

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def calls(fn: Callable[[], Awaitable[str]]) -> int:
    return len(fn.calls)  # type: ignore[attr-defined]


async def test_success_first_time_never_sleeps() -> None:
    fake = FakeTime()
    fn = failing(None)
    assert await call_with_retry(policy(fake), fn, idempotent=True) == "ok after 1"
    assert calls(fn) == 1
    assert fake.sleeps == []


async def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    fake = FakeTime()
    fn = failing(Unavailable("503"), Timeout("slow"), None)
    assert await call_with_retry(policy(fake), fn, idempotent=True) == "ok after 3"
    assert calls(fn) == 3
    assert fake.sleeps == [0.5, 1.0]  # random() == 1: the top of the jitter range, base * 2**(n-1)


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    fake = FakeTime()
    last = Unavailable("still down")
    fn = failing(Unavailable("down"), last)
    with pytest.raises(Unavailable) as info:
        await call_with_retry(policy(fake), fn, idempotent=True)
    assert info.value is last
    assert calls(fn) == 4
    assert fake.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "error",
    [
        AuthError("denied", status=403),
        NotFound("gone"),
        Conflict("invalid state"),
        InvalidRequest("bad"),
        MalformedResponse("html"),
    ],
)
async def test_permanent_errors_are_not_retried(error: ProviderError) -> None:
    fake = FakeTime()
    fn = failing(error)
    with pytest.raises(type(error)):
        await call_with_retry(policy(fake), fn, idempotent=True)
    assert calls(fn) == 1
    assert fake.sleeps == []


async def test_truncated_json_is_a_transient_malformed_response() -> None:
    fake = FakeTime()
    fn = failing(MalformedResponse("cut short", transient=True), None)
    assert await call_with_retry(policy(fake), fn, idempotent=True) == "ok after 2"


async def test_retry_after_is_a_floor_for_the_next_wait() -> None:
    fake = FakeTime()
    fn = failing(Throttled("slow down", retry_after=7.0), Throttled("again", retry_after=0.01), None)
    await call_with_retry(policy(fake, base_delay_seconds=0.01), fn, idempotent=True)
    # first wait: jitter says at most 0.01, Retry-After says 7 (above max_delay too: the floor wins);
    # second wait: jitter 0.02 is above the 0.01 hint, so the jitter stands.
    assert fake.sleeps == [7.0, 0.02]


async def test_retry_after_beyond_the_total_budget_gives_up_at_once() -> None:
    fake = FakeTime()
    fn = failing(Throttled("quota", retry_after=120.0), None)
    with pytest.raises(Throttled) as info:
        await call_with_retry(policy(fake, total_timeout_seconds=30.0), fn, idempotent=True)
    assert info.value.retry_after == 120.0  # the caller (the reconciler) can requeue after it
    assert calls(fn) == 1
    assert fake.sleeps == []


async def test_total_time_is_bounded_including_time_spent_in_attempts() -> None:
    fake = FakeTime()
    fn = failing(Timeout("slow"), took=3.0, fake=fake)
    with pytest.raises(Timeout):
        await call_with_retry(policy(fake, max_attempts=100, total_timeout_seconds=10.0), fn, idempotent=True)
    # attempt 1 ends at 3, wait 0.5 -> attempt 2 ends at 6.5, wait 1 -> attempt 3 ends at 10.5 > 10: stop
    assert calls(fn) == 3
    assert fake.sleeps == [0.5, 1.0]
    assert fake.now - 1000.0 <= 10.0 + 3.0  # the budget plus at most one attempt


async def test_waits_are_capped_by_max_delay_and_jittered() -> None:
    fake = FakeTime()
    fn = failing(Unavailable("x"))
    with pytest.raises(Unavailable):
        await call_with_retry(policy(fake, max_attempts=6, max_delay_seconds=3.0), fn, idempotent=True)
    assert fake.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]

    zero = FakeTime()
    no_jitter_luck = replace(policy(zero), random=lambda: 0.0)
    with pytest.raises(Unavailable):
        await call_with_retry(no_jitter_luck, failing(Unavailable("x")), idempotent=True)
    assert zero.sleeps == [0.0, 0.0, 0.0]


def test_backoff_draws_uniformly_below_the_ceiling() -> None:
    draws = iter([0.25, 0.5, 0.75])
    p = RetryPolicy(base_delay_seconds=2.0, max_delay_seconds=100.0, random=lambda: next(draws))
    assert [p.backoff(1), p.backoff(2), p.backoff(3)] == [0.5, 2.0, 6.0]


async def test_non_idempotent_call_is_not_retried_once_the_request_may_have_arrived() -> None:
    for error in (Timeout("no answer"), Unavailable("503", retry_after=1.0)):
        fake = FakeTime()
        fn = failing(error, None)
        with pytest.raises(type(error)):
            await call_with_retry(policy(fake), fn, idempotent=False)
        assert calls(fn) == 1, error


async def test_a_throttled_non_idempotent_call_is_retried_no_sooner_than_its_retry_after() -> None:
    # throttled = refused unprocessed: nothing was created, so even a create is sent again
    fake = FakeTime()
    fn = failing(Throttled("429", retry_after=3.0), None)
    assert await call_with_retry(policy(fake, base_delay_seconds=0.01), fn, idempotent=False) == "ok after 2"
    assert fake.sleeps == [3.0]


async def test_non_idempotent_call_is_retried_when_the_request_never_left() -> None:
    fake = FakeTime()
    fn = failing(Unavailable("connection refused", sent=False), Timeout("connect timeout", sent=False), None)
    assert await call_with_retry(policy(fake), fn, idempotent=False) == "ok after 3"
    fn2 = failing(Unavailable("refused", sent=False), Timeout("read timeout", sent=True), None)
    with pytest.raises(Timeout):
        await call_with_retry(policy(FakeTime()), fn2, idempotent=False)
    assert calls(fn2) == 2


async def test_on_retry_hook_sees_every_retry_and_counts_throttles() -> None:
    fake = FakeTime()
    events: list[RetryEvent] = []
    stats = RetryStats()

    def hook(event: RetryEvent) -> None:
        events.append(event)
        stats(event)

    fn = failing(Throttled("429", retry_after=2.0), Unavailable("503"), Throttled("429"), None)
    await call_with_retry(policy(fake), fn, idempotent=True, on_retry=hook)
    assert [(e.attempt, e.wait_seconds, e.throttled) for e in events] == [
        (1, 2.0, True),
        (2, 1.0, False),
        (3, 2.0, True),
    ]
    assert (stats.retries, stats.throttles) == (3, 2)


async def test_single_attempt_policy_never_retries() -> None:
    fake = FakeTime()
    fn = failing(Unavailable("x"), None)
    with pytest.raises(Unavailable):
        await call_with_retry(policy(fake, max_attempts=1), fn, idempotent=True)
    assert calls(fn) == 1


async def test_non_provider_exceptions_propagate_untouched() -> None:
    async def broken() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retry(policy(FakeTime()), broken, idempotent=True)


def test_may_retry_rules() -> None:
    assert may_retry(Unavailable("x"), idempotent=True)
    assert not may_retry(Unavailable("x"), idempotent=False)
    assert may_retry(Unavailable("x", sent=False), idempotent=False)
    assert may_retry(Throttled("x"), idempotent=False)
    assert not may_retry(NotFound("x", sent=False), idempotent=True)
    assert not may_retry(ValueError("x"), idempotent=True)
    assert not may_retry(None, idempotent=True)


def test_policy_validation_and_defaults() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(total_timeout_seconds=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_seconds=-1)
    assert set(DEFAULT_RETRY_POLICIES) == set(KeystoreType)
    for kind in KeystoreType:
        p = retry_policy_for(kind)
        assert 2 <= p.max_attempts <= 10
        assert p.total_timeout_seconds <= 120
    assert retry_policy_for(KeystoreType.AWS_KMS).max_attempts == 3  # botocore standard mode
    assert retry_policy_for(KeystoreType.GOOGLE_KMS).base_delay_seconds == 0.1  # Cloud KMS service config


def test_in_doubt_rules() -> None:
    """In doubt: the request arrived and the answer does not say it was refused."""
    assert in_doubt(Timeout("read timeout"))
    assert in_doubt(Unavailable("503"))
    assert in_doubt(MalformedResponse("200 with a body cut short"))
    assert in_doubt(MalformedResponse("200 with the wrong shape", transient=False))
    assert not in_doubt(Throttled("429"))  # refused unprocessed
    assert not in_doubt(Unavailable("connection refused", sent=False))
    assert not in_doubt(Conflict("already pending deletion"))
    assert not in_doubt(NotFound("no such key"))


class Checked:
    """A non-repeatable call: ``outcomes`` in turn (an error, or ``"done"`` for success), and whether
    the provider has carried it out (set by the attempts listed in ``applies``)."""

    def __init__(self, outcomes: list[ProviderError | str], applies: set[int], read_errors: int = 0) -> None:
        self.outcomes, self.applies, self.read_errors = outcomes, applies, read_errors
        self.applied = False
        self.log: list[str] = []

    async def send(self) -> str:
        attempt = sum(1 for entry in self.log if entry == "send")
        self.log.append("send")
        if attempt in self.applies:
            self.applied = True
        outcome = self.outcomes[min(attempt, len(self.outcomes) - 1)]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    async def done(self) -> str | None:
        self.log.append("read")
        if self.read_errors:
            self.read_errors -= 1
            raise Unavailable("read failed")
        return "read: applied" if self.applied else None


async def test_call_checked_reads_before_resending_after_an_answer_in_doubt() -> None:
    call = Checked([Timeout("lost answer"), "done"], applies={0})
    assert await call_checked(policy(FakeTime()), call.send, call.done) == "read: applied"
    assert call.log == ["send", "read"]  # never sent twice: it had been carried out

    call = Checked([Unavailable("503"), "done"], applies={1})
    assert await call_checked(policy(FakeTime()), call.send, call.done) == "done"
    assert call.log == ["send", "read", "send"]  # not carried out: sent again after the read


async def test_call_checked_resends_without_a_read_when_not_in_doubt() -> None:
    fake = FakeTime()
    events: list[RetryEvent] = []
    call = Checked([Throttled("429", retry_after=2.0), Unavailable("refused", sent=False), "done"], applies={2})
    assert await call_checked(policy(fake), call.send, call.done, on_retry=events.append) == "done"
    assert call.log == ["send", "send", "send"]
    assert [e.wait_seconds for e in events] == [2.0, 1.0]


async def test_call_checked_never_retries_a_refusal() -> None:
    call = Checked([Conflict("invalid state")], applies=set())
    with pytest.raises(Conflict):
        await call_checked(policy(FakeTime()), call.send, call.done)
    assert call.log == ["send"]


async def test_call_checked_reads_once_more_when_the_policy_gives_up() -> None:
    call = Checked([Timeout("lost")], applies={3})  # the last attempt took effect, its answer was lost
    assert await call_checked(policy(FakeTime()), call.send, call.done) == "read: applied"
    assert call.log == ["send", "read", "send", "read", "send", "read", "send", "read"]

    call = Checked([Timeout("lost")], applies=set())
    with pytest.raises(Timeout, match="lost"):
        await call_checked(policy(FakeTime()), call.send, call.done)
    assert call.log.count("send") == 4 and call.log[-1] == "read"


async def test_call_checked_raises_the_calls_own_error_when_the_final_read_fails() -> None:
    call = Checked([Timeout("lost")], applies=set(), read_errors=99)
    with pytest.raises(Timeout, match="lost"):
        await call_checked(policy(FakeTime(), max_attempts=1), call.send, call.done)
    assert call.log == ["send", "read"]
