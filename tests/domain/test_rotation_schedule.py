"""Rotation schedules, pure: the ISO 8601 duration a policy is written in (checked in one place), calendar
arithmetic, a key's own policy over its template's, and when a key is due."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from keyorch.domain import rotation
from keyorch.domain.errors import InvalidInput
from keyorch.domain.rules import apply_state_change
from keyorch.domain.states import KeyAction, KeyState
from keyorch.domain.validation import Duration, check_rotation_policy, parse_duration

from .factories import T0, make_key

HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("P90D", Duration(days=90)),
        ("P12W", Duration(days=84)),
        ("P3M", Duration(months=3)),
        ("P1Y", Duration(months=12)),
        ("P1Y2M3W4DT5H6M7S", Duration(months=14, days=25, seconds=5 * 3600 + 6 * 60 + 7)),
        ("PT12H", Duration(seconds=12 * 3600)),
    ],
)
def test_durations_read(text: str, period: Duration) -> None:
    assert parse_duration("rotation_policy", text) == period
    assert check_rotation_policy("rotation_policy", text, HOUR) == text


@pytest.mark.parametrize("text", ["", "P", "PT", "P1YT", "90D", "P-1D", "P1.5D", "p90d", "P90D\n", "P1H", "P9" * 30])
def test_what_is_not_a_duration_is_refused_naming_field_value_and_form(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_rotation_policy("key.rotation_policy", text, HOUR)
    assert refused.value.target == "key.rotation_policy"
    assert "key.rotation_policy" in refused.value.message and "ISO 8601 duration such as P90D" in refused.value.message


@pytest.mark.parametrize("text", ["PT59M", "PT3599S"])
def test_a_policy_shorter_than_the_least_interval_between_rotations_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_rotation_policy("rotation_policy", text, HOUR)
    assert "shorter than the least time between two rotations" in refused.value.message
    assert "3600 s (setting keys.rotation_min_interval_seconds)" in refused.value.message
    assert check_rotation_policy("rotation_policy", text, timedelta(minutes=1)) == text


def test_a_policy_of_no_time_is_refused_whatever_the_least_interval() -> None:
    for text in ("P0D", "PT0S", "P0Y0M"):
        with pytest.raises(InvalidInput, match="is no time at all"):
            check_rotation_policy("rotation_policy", text, timedelta(0))


def test_the_least_interval_is_the_callers_and_a_policy_is_at_most_a_hundred_years() -> None:
    check_rotation_policy("rotation_policy", "PT1H", HOUR)
    with pytest.raises(InvalidInput, match="shorter than"):
        check_rotation_policy("rotation_policy", "P1D", timedelta(days=2))
    check_rotation_policy("rotation_policy", "P100Y", HOUR)
    for text in ("P101Y", "P99999999999999999999999999D"):
        with pytest.raises(InvalidInput, match="longer than 36525 days"):
            check_rotation_policy("rotation_policy", text, HOUR)


def test_months_follow_the_calendar() -> None:
    jan31 = datetime(2027, 1, 31, 8, 0, tzinfo=UTC)
    assert rotation.add_duration(jan31, Duration(months=1)) == datetime(2027, 2, 28, 8, 0, tzinfo=UTC)
    assert rotation.add_duration(jan31, Duration(months=13)) == datetime(2028, 2, 29, 8, 0, tzinfo=UTC)
    assert rotation.add_duration(jan31, Duration(months=12, days=1, seconds=60)) == datetime(
        2028, 2, 1, 8, 1, tzinfo=UTC
    )
    assert rotation.add_duration(jan31, Duration(days=90)) == jan31 + timedelta(days=90)


def test_a_keys_own_policy_overrides_its_templates() -> None:
    key = make_key(KeyState.ACTIVE)
    assert rotation.schedule_of(key, None) is None
    assert rotation.schedule_of(key, "P90D") == rotation.Schedule("P90D", "template")
    own = replace(key, rotation_policy="P30D")
    assert rotation.schedule_of(own, "P90D") == rotation.Schedule("P30D", "key")


def test_the_schedule_counts_from_the_last_rotation_else_activation_else_creation() -> None:
    made = make_key(KeyState.PRE_ACTIVE)
    schedule = rotation.Schedule("P90D", "template")
    assert rotation.next_rotation_at(made, schedule) is None  # only an active key rotates
    activated_at = T0 + timedelta(days=10)
    active = apply_state_change(made, KeyAction.ACTIVATE, activated_at)
    assert active.activated_at == activated_at
    assert rotation.next_rotation_at(active, schedule) == activated_at + timedelta(days=90)
    assert not rotation.due_for_rotation(active, schedule, activated_at + timedelta(days=90) - timedelta(seconds=1))
    assert rotation.due_for_rotation(active, schedule, activated_at + timedelta(days=90))

    rotated_at = activated_at + timedelta(days=91)
    rotated, version = rotation.rotate(active, rotated_at, rotation.SCHEDULER)
    assert version.created_by == "scheduler"
    assert rotation.next_rotation_at(rotated, schedule) == rotated_at + timedelta(days=90)

    created_active = replace(make_key(KeyState.ACTIVE), activated_at=None)  # made before keyorch recorded it
    assert rotation.next_rotation_at(created_active, schedule) == T0 + timedelta(days=90)
    deactivated = apply_state_change(active, KeyAction.DEACTIVATE, rotated_at)
    assert rotation.next_rotation_at(deactivated, schedule) is None
    again = apply_state_change(deactivated, KeyAction.REACTIVATE, rotated_at + timedelta(days=1))
    assert again.activated_at == activated_at  # the first activation counts, not a reactivation
