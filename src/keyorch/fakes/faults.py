"""Fault injection shared by every fake provider.

A fault plan is a list of rules per provider. A rule matches an operation name (or ``*``)
and either serves an exact ``sequence`` of outcomes in order (``ok`` meaning "no fault"),
or injects one of its ``faults`` at a ``rate`` chosen by a seeded random generator, so that
the same plan against the same request stream gives the same faults on every run.

Configuration (YAML or JSON), for ``keyorch fakes serve --faults FILE``::

    seed: 42
    providers:
      aws_kms:
        - operation: CreateKey
          sequence: [error_503, throttle, ok]
        - operation: "*"
          rate: 0.3
          faults: [error_500, throttle, {kind: latency, delay_ms: 200}, drop, truncate, non_json]

Most faults are served instead of the operation. Three are served after the fake has carried it out,
so the client cannot tell whether it happened: ``truncate`` (the real answer, cut short),
``error_500_after`` (a 500 in place of the real answer) and ``hold_after`` (the real answer, held
``hang_seconds`` first: a client whose read timeout is shorter gives up on an operation that was made,
and a test can kill the client while the answer is held, after the provider acted and before the
client learned it; the request log shows the handler's status as soon as it ran).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FaultKind = Literal[
    "ok",
    "error_500",
    "error_503",
    "throttle",
    "latency",
    "hang",
    "drop",
    "truncate",
    "non_json",
    "error_500_after",
    "hold_after",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class Fault(BaseModel):
    """One outcome: a fault kind and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    retry_after_seconds: float = Field(default=1.0, ge=0, le=3600)
    delay_ms: int = Field(default=100, ge=0, le=600_000)
    hang_seconds: float = Field(default=3600.0, ge=0, le=86_400, description="how long hang and hold_after hold")
    status: int = Field(default=200, ge=100, le=599, description="HTTP status of a non_json body")

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        if isinstance(raw, str):
            return cls.model_validate({"kind": raw})
        if isinstance(raw, Fault):
            return raw
        return cls.model_validate(raw)


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: str = "*"
    sequence: list[Fault] | None = None
    rate: float | None = Field(default=None, ge=0.0, le=1.0)
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("sequence", "faults", mode="before")
    @classmethod
    def _parse_faults(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError("must be a list of fault kinds or fault objects")
        return [Fault.parse(item) for item in value]

    @model_validator(mode="after")
    def _one_mode(self) -> FaultRule:
        if (self.sequence is None) == (self.rate is None):
            raise ValueError("a fault rule needs exactly one of 'sequence' or 'rate'")
        if self.rate is not None and not self.faults:
            raise ValueError("a rate rule needs a non-empty 'faults' list")
        return self


class ProviderFaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    rules: list[FaultRule] = Field(default_factory=list)


class FaultsFile(BaseModel):
    """The file given to ``keyorch fakes serve --faults``."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    providers: dict[str, list[FaultRule]] = Field(default_factory=dict)

    def for_provider(self, kind: str) -> ProviderFaults:
        return ProviderFaults(seed=self.seed, rules=self.providers.get(kind, []))


@dataclass
class _RuleState:
    rule: FaultRule
    rng: random.Random
    position: int = 0


@dataclass
class FaultInjector:
    """Decides, per request, which fault (if any) to serve. Deterministic for a given seed."""

    provider: str
    config: ProviderFaults = field(default_factory=ProviderFaults)
    _states: list[_RuleState] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.configure(self.config)

    def configure(self, config: ProviderFaults) -> None:
        self.config = config
        self._states = []
        for index, rule in enumerate(config.rules):
            digest = hashlib.sha256(f"{config.seed}:{self.provider}:{index}".encode()).digest()
            self._states.append(_RuleState(rule, random.Random(int.from_bytes(digest[:8], "big"))))

    def next_fault(self, operation: str) -> Fault | None:
        """The first matching rule that still has something to say decides."""
        for state in self._states:
            rule = state.rule
            if rule.operation not in ("*", operation):
                continue
            if rule.sequence is not None:
                if state.position >= len(rule.sequence):
                    continue
                fault = rule.sequence[state.position]
                state.position += 1
                return None if fault.kind == "ok" else fault
            assert rule.rate is not None
            roll = state.rng.random()
            choice = state.rng.choice(rule.faults)
            if roll < rule.rate:
                return None if choice.kind == "ok" else choice
            return None
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "rules": [
                {
                    **s.rule.model_dump(mode="json", exclude_none=True),
                    "served": s.position if s.rule.sequence is not None else None,
                }
                for s in self._states
            ],
        }
