"""UKO's ListManagedKeys query (:class:`keyorch.api.models.KeyFilterQuery`) as the service's KeyFilter: the
range parameters (``<field>``, ``<field>_min``, ``<field>_max``) as inclusive bounds, a day given for a time
as that whole day (UTC), and ``sort`` as (field, descending) pairs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from keyorch.api.models import KeyFilterQuery
from keyorch.service.keys import KeyFilter
from keyorch.store.key_selection import Bound

_DATES = ("activation_date", "expiration_date")
_TIMES = ("created_at", "updated_at")


def _instant(value: date, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)


def _bounds(q: KeyFilterQuery, name: str) -> tuple[Bound | None, Bound | None] | None:
    exact, low, high = (getattr(q, name + suffix) for suffix in ("", "_min", "_max"))
    if exact is None and low is None and high is None:
        return None
    if exact is not None:
        low = exact if low is None or exact > low else low
        high = exact if high is None or exact < high else high
    if name in _TIMES:
        return (_instant(low, False) if low is not None else None, _instant(high, True) if high is not None else None)
    return low, high


def key_filter(q: KeyFilterQuery, vault_ids: frozenset[str] | None, keystore_ids: tuple[str, ...] = ()) -> KeyFilter:
    """The query as the service's filter; ``keystore_ids``: only keys in those keystores (a keystore's keys)."""
    ranges = {name: found for name in (*_DATES, *_TIMES, "size") if (found := _bounds(q, name)) is not None}
    types = tuple(dict.fromkeys([*(q.keystore_type or ()), *(q.instance_keystore_type or ())]))
    return KeyFilter(
        state=",".join(s.value for s in q.state) if q.state else None,
        out_of_sync=q.out_of_sync,
        include_destroyed=q.include_destroyed,
        limit=q.limit,
        offset=q.offset,
        vault_ids=vault_ids,
        label=q.label,
        algorithms=tuple(q.algorithm or ()),
        template_ids=tuple(q.template_id or ()),
        template_names=tuple(q.template_name or ()),
        keystore_types=types,
        keystore_names=tuple(q.keystore_name or ()),
        keystore_ids=keystore_ids,
        ranges=ranges,
        sort=tuple((field.removeprefix("-"), field.startswith("-")) for field in q.sort or ()),
    )
