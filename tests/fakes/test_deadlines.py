"""Deadlines: the fakes' index of when pending deletions and purges fall due."""

from __future__ import annotations

from keyorch.fakes.deadlines import Deadlines


def test_due_pops_in_time_order_only_what_has_come() -> None:
    deadlines = Deadlines()
    for when, name in [(30.0, "c"), (10.0, "a"), (20.0, "b"), (20.0, "b2")]:
        deadlines.add(when, name)
    assert deadlines.due(5.0) == []
    assert deadlines.due(20.0) == ["a", "b", "b2"]
    assert deadlines.due(20.0) == []  # each entry is handed out once
    assert len(deadlines) == 1
    assert deadlines.due(1e9) == ["c"]


def test_a_name_added_twice_comes_out_twice_for_the_caller_to_recheck() -> None:
    deadlines = Deadlines()
    deadlines.add(7.0, "k")
    deadlines.add(30.0, "k")  # rescheduled: the old entry stays, the record says which one holds
    assert deadlines.due(8.0) == ["k"]
    assert deadlines.due(31.0) == ["k"]
    deadlines.add(1.0, "x")
    deadlines.clear()
    assert deadlines.due(100.0) == []
