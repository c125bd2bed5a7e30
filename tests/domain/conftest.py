from __future__ import annotations

import pytest
from tests.domain.factories import T0

from keyorch.domain.clock import FixedClock


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)
