"""Key rotation policies of the Azure Key Vault fake (``GET``/``PUT /keys/{name}/rotationpolicy``).

The shape is the REST spec's ``KeyRotationPolicy`` (examples/GetKeyRotationPolicy-example.json, api
7.3+): ``{"id", "lifetimeActions": [{"trigger": {"timeAfterCreate" | "timeBeforeExpiry": <ISO 8601
duration>}, "action": {"type": "Rotate" | "Notify"}}], "attributes": {"expiryTime", "created",
"updated"}}``. The rules enforced on ``PUT`` are those Microsoft's key-rotation guide and SDK docs
state: the rotation time is at least 7 days after creation and at least 7 days before expiry;
``expiryTime`` is at least 28 days; rotating before expiry needs an ``expiryTime``; a ``Notify``
action needs a ``timeBeforeExpiry`` trigger; at most one action of each type. A key that never had a
policy set answers the service's default, a single ``Notify`` 30 days before expiry, without
``id``/``created``/``updated`` (the SDKs document those as absent until a policy is set); an empty
``lifetimeActions`` restores that default's actions, as the SDKs document. The ``Notify`` rule and the
default's exact shape are inferred from the SDK documentation, not checked against a live vault.

Automatic rotation follows the policy against the fake's clock: a ``Rotate`` action with
``timeAfterCreate`` is due that long after the latest version's ``created``; with ``timeBeforeExpiry``
that long before the latest version's ``exp``. Durations add calendar years and months (``P1Y``,
``P3M``) as dates do, and weeks, days and times as seconds.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from keyorch.fakes.azure_crypto import bad_parameter

_DURATION = re.compile(
    r"P(?:(?P<y>\d{1,4})Y)?(?:(?P<mo>\d{1,5})M)?(?:(?P<w>\d{1,5})W)?(?:(?P<d>\d{1,6})D)?"
    r"(?:T(?:(?P<h>\d{1,7})H)?(?:(?P<mi>\d{1,9})M)?(?:(?P<s>\d{1,10})S)?)?"
)
MIN_ROTATE_DAYS = 7
MIN_EXPIRY_DAYS = 28
DEFAULT_NOTIFY = "P30D"
ACTION_TYPES = {"rotate": "Rotate", "notify": "Notify"}
TRIGGERS = ("timeAfterCreate", "timeBeforeExpiry")
DAY = 86400


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration as Key Vault takes it (``P90D``, ``P1Y``, ``P3M``, ``PT48H``)."""

    text: str
    years: int = 0
    months: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, raw: Any, field_name: str) -> Duration:
        match = _DURATION.fullmatch(raw) if isinstance(raw, str) else None
        if match is None or raw in ("P", "PT") or raw.endswith("T"):
            shown = str(raw)[:40]
            raise bad_parameter(f"Property {field_name} must be an ISO 8601 duration such as P90D, not {shown!r}.")
        n = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        seconds = (n["w"] * 7 + n["d"]) * DAY + n["h"] * 3600 + n["mi"] * 60 + n["s"]
        return cls(raw, n["y"], n["mo"], seconds)

    def after(self, when: int) -> int:
        """``when`` (Unix seconds) plus this duration."""
        moment = datetime.fromtimestamp(when, UTC)
        month_index = moment.month - 1 + self.months + 12 * self.years
        year, month = moment.year + month_index // 12, month_index % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        shifted = moment.replace(year=min(year, 9999), month=month, day=day) + timedelta(seconds=self.seconds)
        return int(shifted.timestamp())

    def before(self, when: int) -> int:
        """``when`` minus this duration (months and years counted back as dates)."""
        back = Duration(self.text, -self.years, -self.months, -self.seconds)
        return back.after(when)

    def at_least_days(self, days: int, reference: int) -> bool:
        return self.after(reference) - reference >= days * DAY


@dataclass(frozen=True)
class LifetimeAction:
    trigger: str  # timeAfterCreate | timeBeforeExpiry
    after: Duration
    action: str  # Rotate | Notify

    def to_json(self) -> dict[str, Any]:
        return {"trigger": {self.trigger: self.after.text}, "action": {"type": self.action}}


@dataclass
class RotationPolicy:
    actions: list[LifetimeAction] = field(default_factory=list)
    expiry_time: Duration | None = None
    created: int | None = None
    updated: int | None = None

    @property
    def rotate(self) -> LifetimeAction | None:
        return next((a for a in self.actions if a.action == "Rotate"), None)

    def due(self, latest_created: int, latest_exp: int | None) -> int | None:
        """When the latest version is to be rotated (Unix seconds), or ``None`` if never."""
        action = self.rotate
        if action is None:
            return None
        if action.trigger == "timeAfterCreate":
            return action.after.after(latest_created)
        return action.after.before(latest_exp) if latest_exp is not None else None

    def new_version_exp(self, created: int) -> int | None:
        """The ``exp`` a version made by a rotation gets: ``expiryTime`` after its creation."""
        return self.expiry_time.after(created) if self.expiry_time is not None else None

    def to_json(self, policy_id: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if self.expiry_time is not None:
            attributes["expiryTime"] = self.expiry_time.text
        doc: dict[str, Any] = {}
        if self.created is not None:
            doc["id"] = policy_id
            attributes |= {"created": self.created, "updated": self.updated}
        return doc | {"lifetimeActions": [a.to_json() for a in self.actions], "attributes": attributes}


def default_policy() -> RotationPolicy:
    """What a key that never had a policy set answers: notify 30 days before expiry, nothing else."""
    return RotationPolicy([LifetimeAction("timeBeforeExpiry", Duration.parse(DEFAULT_NOTIFY, "trigger"), "Notify")])


def _action(raw: Any, index: int) -> LifetimeAction:
    where = f"lifetimeActions[{index}]"
    if not isinstance(raw, dict):
        raise bad_parameter(f"Property {where} must be an object.")
    trigger, action = raw.get("trigger"), raw.get("action")
    if not isinstance(trigger, dict) or not isinstance(action, dict):
        raise bad_parameter(f"Property {where} needs a trigger object and an action object.")
    given = [name for name in TRIGGERS if trigger.get(name) is not None]
    if len(given) != 1:
        raise bad_parameter(f"Property {where}.trigger must set exactly one of timeAfterCreate or timeBeforeExpiry.")
    kind = action.get("type")
    if not isinstance(kind, str) or kind.lower() not in ACTION_TYPES:
        raise bad_parameter(f"Property {where}.action.type must be Rotate or Notify.")
    after = Duration.parse(trigger[given[0]], f"{where}.trigger.{given[0]}")
    return LifetimeAction(given[0], after, ACTION_TYPES[kind.lower()])


def parse_policy(doc: dict[str, Any], now: int) -> RotationPolicy:
    """A ``PUT`` body checked against Key Vault's rules (400 ``BadParameter`` naming the rule)."""
    raw_actions = doc.get("lifetimeActions", [])
    if raw_actions is None:
        raw_actions = []
    if not isinstance(raw_actions, list):
        raise bad_parameter("Property lifetimeActions must be an array.")
    attributes = doc.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise bad_parameter("Property attributes must be an object.")
    expiry = attributes.get("expiryTime")
    expiry_time = Duration.parse(expiry, "attributes.expiryTime") if expiry is not None else None
    if expiry_time is not None and not expiry_time.at_least_days(MIN_EXPIRY_DAYS, now):
        raise bad_parameter(f"The expiryTime of a rotation policy must be at least {MIN_EXPIRY_DAYS} days (P28D).")
    if not raw_actions:  # an empty list restores the default policy's actions
        return RotationPolicy(default_policy().actions, expiry_time)
    actions = [_action(raw, i) for i, raw in enumerate(raw_actions)]
    if len({a.action for a in actions}) != len(actions):
        raise bad_parameter("A rotation policy has at most one Rotate and one Notify lifetime action.")
    for action in actions:
        if action.action == "Notify" and action.trigger != "timeBeforeExpiry":
            raise bad_parameter("A Notify lifetime action needs a timeBeforeExpiry trigger.")
        if action.action != "Rotate":
            continue
        if action.trigger == "timeBeforeExpiry" and expiry_time is None:
            raise bad_parameter("Rotating at a time before expiry needs attributes.expiryTime in the rotation policy.")
        span = action.after.after(now) - now
        if expiry_time is None:
            after_create, before_expiry = span, MIN_ROTATE_DAYS * DAY
        else:
            lifetime = expiry_time.after(now) - now
            after_create, before_expiry = (
                (span, lifetime - span)
                if action.trigger == "timeAfterCreate"
                else (
                    lifetime - span,
                    span,
                )
            )
        if min(after_create, before_expiry) < MIN_ROTATE_DAYS * DAY:
            raise bad_parameter(
                f"The rotation time must be at least {MIN_ROTATE_DAYS} days after creation (P7D) and at least "
                f"{MIN_ROTATE_DAYS} days before the expiryTime."
            )
    return RotationPolicy(actions, expiry_time)
