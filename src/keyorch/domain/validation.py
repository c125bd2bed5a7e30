"""Validation of what users type: names, labels, keystore connection settings, templates.

Every error names the field, the value given and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeystoreType
from keyorch.domain.states import INITIAL_STATES, KeyState
from keyorch.urls import redact_url, redact_urls

# Every pattern is matched whole (``fullmatch``): with ``match``, ``$`` also matches before a final newline.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_REGION_RE = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")
_GCP_ID_RE = re.compile(r"[a-zA-Z0-9_-]{1,63}")
_GCP_PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_INSTANCE_RE = re.compile(r"[A-Za-z0-9-]{1,64}")

#: Algorithms and sizes keyorch manages, per keystore type (Azure stores AES keys only in a Managed HSM).
ALGORITHM_SUPPORT: dict[KeystoreType, dict[str, frozenset[int]]] = {
    KeystoreType.AWS_KMS: {"aes": frozenset({256}), "rsa": frozenset({2048, 3072, 4096})},
    KeystoreType.AZURE_KEY_VAULT: {"aes": frozenset({128, 192, 256}), "rsa": frozenset({2048, 3072, 4096})},
    KeystoreType.GOOGLE_KMS: {"aes": frozenset({256}), "rsa": frozenset({2048, 3072, 4096})},
    KeystoreType.IBM_KEY_PROTECT: {"aes": frozenset({256})},  # Key Protect generates AES-256 root keys only
}
ALGORITHMS: dict[str, frozenset[int]] = {"aes": frozenset({128, 192, 256}), "rsa": frozenset({2048, 3072, 4096})}

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def shown(value: object, limit: int = 80) -> str:
    """``value`` as it may appear in an error message: quoted, escaped, any URL's user-info masked, and cut to
    ``limit`` characters."""
    text = redact_urls(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_text(field: str, value: str, *, display: str | None = None) -> str:
    """Refuse text that no store can hold: a NUL character (PostgreSQL text cannot) or an unpaired surrogate
    (not UTF-8, e.g. from bytes that are not UTF-8 on a command line). Every id, name and filter passes here
    before it reaches the store, whatever the surface. ``display`` is the value as an error may show it."""
    given = shown(value if display is None else display)
    if "\x00" in value:
        raise InvalidInput(
            f"{field} {given} is not valid: it holds a NUL character (U+0000), which is never allowed",
            target=field,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} {given} is not valid text: it holds an unpaired surrogate (U+D800-U+DFFF), "
            "e.g. bytes that are not UTF-8",
            target=field,
        ) from None
    return value


def check_name(field: str, value: str, target: str | None = None) -> str:
    """A name (``field`` says what it names; ``target``, the field an error names when that is another)."""
    check_text(target or field, value)
    if not NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} {shown(value)} is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            target=target or field,
        )
    return value


def check_label(value: str, field: str = "label") -> str:
    check_text(field, value)
    if not LABEL_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} {shown(value)} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            target=field,
        )
    return value


MAX_DESCRIPTION = 1024
#: a keystore's ``location`` (UKO: where it is, free text)
MAX_LOCATION = 128


def check_description(field: str, value: str, limit: int = MAX_DESCRIPTION) -> str:
    """Free text shown to people: at most ``limit`` characters, no control characters but tab and newline."""
    check_text(field, value)
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters long; at most {limit} are allowed", target=field)
    bad = next((c for c in value if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise InvalidInput(
            f"{field} {shown(value)} holds the control character U+{ord(bad):04X}; only tab and newline are allowed",
            target=field,
        )
    return value


def check_location(value: str, field: str = "location") -> str:
    """A keystore's ``location``: free text of at most MAX_LOCATION characters on one line."""
    check_description(field, value, MAX_LOCATION)
    if "\n" in value:
        raise InvalidInput(f"{field} {shown(value)} holds a line break; give one line", target=field)
    return value


#: keystore group names are names (UKO's groups are plain strings); a keystore is in at most MAX_GROUPS
MAX_GROUPS = 64


def check_groups(values: Iterable[str], field: str = "groups") -> tuple[str, ...]:
    """A keystore's groups, in the order given: each a name (1-64 letters, digits, '.', '_' or '-', starting with a
    letter or digit), none twice, at most MAX_GROUPS."""
    groups = tuple(values)
    if len(groups) > MAX_GROUPS:
        raise InvalidInput(f"{field} lists {len(groups)} groups; at most {MAX_GROUPS} are allowed", target=field)
    seen: set[str] = set()
    for group in groups:
        check_name("group", group, target=field)
        if group in seen:
            raise InvalidInput(f"group {shown(group)} is listed twice in {field}", target=field)
        seen.add(group)
    return groups


#: a key carries at most MAX_TAGS tags; a tag's name is one line of at most MAX_TAG_NAME characters, its value
#: one line of at most MAX_TAG_VALUE
MAX_TAGS = 64
MAX_TAG_NAME = 128
MAX_TAG_VALUE = 256


def check_tags(tags: Iterable[tuple[str, str]], field: str = "tags") -> tuple[tuple[str, str], ...]:
    """A key's UKO tags as (name, value) pairs, in the order given: names not empty and none twice."""
    pairs = tuple(tags)
    if len(pairs) > MAX_TAGS:
        raise InvalidInput(f"{field} lists {len(pairs)} tags; at most {MAX_TAGS} are allowed", target=field)
    seen: set[str] = set()
    for name, value in pairs:
        check_location(name, f"{field}[].name")
        check_location(value, f"{field}[].value")
        if not name.strip() or len(name) > MAX_TAG_NAME:
            raise InvalidInput(
                f"tag name {shown(name)} is not valid: use 1-{MAX_TAG_NAME} characters, not only spaces",
                target=f"{field}[].name",
            )
        if len(value) > MAX_TAG_VALUE:
            raise InvalidInput(
                f"the value of tag {shown(name)} is {len(value)} characters long; at most {MAX_TAG_VALUE} are allowed",
                target=f"{field}[].value",
            )
        if name in seen:
            raise InvalidInput(f"tag {shown(name)} is given twice in {field}", target=f"{field}[].name")
        seen.add(name)
    return pairs


def check_key_dates(activation: date | None, expiration: date | None) -> None:
    """UKO's planned dates of a key: the expiration date is not before the activation date."""
    if activation is not None and expiration is not None and expiration < activation:
        raise InvalidInput(
            f"expiration_date {expiration.isoformat()} is before activation_date {activation.isoformat()}",
            target="expiration_date",
        )


def parse_state(field: str, value: str, allowed: frozenset[KeyState] | None = None) -> KeyState:
    choices = [s for s in KeyState if allowed is None or s in allowed]
    try:
        state = KeyState(value)
    except ValueError:
        state = None
    if state is None or state not in choices:
        raise InvalidInput(
            f"{field} {shown(value)} is not allowed; choose one of: {', '.join(choices)}",
            target=field,
        )
    return state


def parse_initial_state(value: str) -> KeyState:
    return parse_state("state", value, INITIAL_STATES)


#: The placeholders a template's naming scheme may hold, each written ``{name}`` (keyorch's form) or ``<name>`` (the
#: angle-bracket form of UKO's console), and what each stands for. A scheme holds ``label`` at least once, so two
#: keys of one template never share a name; the others are fixed when the key is made (its name never changes).
NAMING_PLACEHOLDERS: dict[str, str] = {
    "label": "the key's label",
    "template": "the template's name",
    "vault": "the vault's name",
    "date": "the day the key is made, YYYYMMDD (UTC)",
    "time": "the time the key is made, HHMMSS (UTC)",
}
MAX_NAMING_SCHEME = 96
_PLACEHOLDER_RE = re.compile(r"\{([^{}<>]*)\}|<([^{}<>]*)>")


def _scheme_parts(scheme: str) -> list[tuple[str, bool]]:
    """A naming scheme as (text, is_placeholder) parts; InvalidInput naming what is wrong and what is allowed."""
    others = ", ".join(f"{{{name}}}" for name in NAMING_PLACEHOLDERS if name != "label")

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(
            f"naming_scheme {shown(scheme)} is not valid: {why}; write text with the placeholders {{label}} "
            f"(required) and {others}, each as {{name}} or <name>",
            target="naming_scheme",
        )

    parts: list[tuple[str, bool]] = []
    at = 0
    for match in _PLACEHOLDER_RE.finditer(scheme):
        parts.append((scheme[at : match.start()], False))
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name not in NAMING_PLACEHOLDERS:
            raise refuse(f"{shown(match.group(0))} is not a placeholder")
        parts.append((name, True))
        at = match.end()
    parts.append((scheme[at:], False))
    for text, placeholder in parts:
        bad = next((c for c in text if c in "{}<>"), None) if not placeholder else None
        if bad is not None:
            raise refuse(f"{bad!r} outside a placeholder")
    if ("label", True) not in parts:
        raise refuse("it holds no {label}")
    return [(text, placeholder) for text, placeholder in parts if text or placeholder]


def check_naming_scheme(scheme: str) -> str:
    """A template's naming scheme: text and placeholders (:data:`NAMING_PLACEHOLDERS`), ``{label}`` at least once,
    at most MAX_NAMING_SCHEME characters, no control characters."""
    check_text("naming_scheme", scheme)
    if len(scheme) > MAX_NAMING_SCHEME:
        raise InvalidInput(
            f"naming_scheme {shown(scheme)} is too long: at most {MAX_NAMING_SCHEME} characters", target="naming_scheme"
        )
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in scheme):
        raise InvalidInput(f"naming_scheme {shown(scheme)} holds a control character", target="naming_scheme")
    _scheme_parts(scheme)
    return scheme


#: UKO's planned key dates in a template: an ISO 8601 period after the key's creation (``P1Y``, ``P5Y1M1W2D``)
_PERIOD_RE = re.compile(r"P(?=\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_key_date(field: str, value: str) -> str:
    """A template's planned activation or expiration of its keys: an ISO 8601 period (UKO's form, ``P1Y``: one
    year after the key is made; years, months, weeks, days) or a calendar date (``2027-01-31``)."""
    check_text(field, value)
    if len(value) <= 100 and _PERIOD_RE.fullmatch(value):
        return value
    if _DATE_RE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise InvalidInput(
        f"{field} {shown(value)} is not valid: give an ISO 8601 period after the key's creation such as P1Y or "
        "P5Y1M1W2D (years, months, weeks, days), or a date YYYY-MM-DD",
        target=field,
    )


#: A rotation policy (keyorch's addition to UKO's key properties): an ISO 8601 duration, years, months, weeks, days
#: and a time part (``P90D``, ``P1Y``, ``P3M``, ``PT12H``), whole numbers only
_DURATION_RE = re.compile(
    r"P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?"
)
#: the longest rotation policy taken (a hundred years)
MAX_ROTATION_DAYS = 36525


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration as calendar months, days and seconds (months and years follow the calendar)."""

    months: int = 0
    days: int = 0
    seconds: int = 0

    @property
    def shortest_seconds(self) -> int:
        """The least time it can span, in seconds (a month of 28 days, a year of 365)."""
        years, months = divmod(self.months, 12)
        return (years * 365 + months * 28 + self.days) * 86400 + self.seconds

    @property
    def whole_days(self) -> int | None:
        """The duration in days when it is a number of days or weeks only (what providers' own rotation takes)."""
        return self.days if not self.months and not self.seconds else None


def parse_duration(field: str, value: str) -> Duration:
    """An ISO 8601 duration (``P90D``); InvalidInput naming ``field``, the value and the form allowed."""
    check_text(field, value)
    match = _DURATION_RE.fullmatch(value) if len(value) <= 40 else None
    if match is None:
        raise InvalidInput(
            f"{field} {shown(value)} is not valid: give an ISO 8601 duration such as P90D, P12W, P3M, P1Y or PT12H "
            "(whole years, months, weeks, days, hours, minutes, seconds)",
            target=field,
        )
    y, mo, w, d, h, mi, sec = (int(g) if g else 0 for g in match.groups())
    return Duration(months=y * 12 + mo, days=w * 7 + d, seconds=h * 3600 + mi * 60 + sec)


def check_rotation_policy(field: str, value: str, min_interval: timedelta) -> str:
    """A rotation policy: an ISO 8601 duration from ``min_interval`` (a key rotates at most that often,
    ``keys.rotation_min_interval_seconds``) to a hundred years."""
    period = parse_duration(field, value)
    if period.shortest_seconds == 0:
        raise InvalidInput(
            f"{field} {shown(value)} is no time at all; give a longer duration such as P90D", target=field
        )
    if period.shortest_seconds < min_interval.total_seconds():
        raise InvalidInput(
            f"{field} {shown(value)} is shorter than the least time between two rotations of a key, "
            f"{int(min_interval.total_seconds())} s (setting keys.rotation_min_interval_seconds); "
            "give a longer duration",
            target=field,
        )
    if period.shortest_seconds > MAX_ROTATION_DAYS * 86400:
        raise InvalidInput(
            f"{field} {shown(value)} is longer than {MAX_ROTATION_DAYS} days (a hundred years), the longest allowed",
            target=field,
        )
    return value


def render_name(scheme: str, label: str, *, made_at: datetime, template: str = "", vault: str = "") -> str:
    """The name a key made at ``made_at`` gets from its template's naming scheme (checked by check_naming_scheme)."""
    when = made_at
    values = {
        "label": label,
        "template": template,
        "vault": vault,
        "date": when.astimezone(UTC).strftime("%Y%m%d"),
        "time": when.astimezone(UTC).strftime("%H%M%S"),
    }
    return "".join(values[text] if placeholder else text for text, placeholder in _scheme_parts(scheme))


#: What each keystore type calls a managed key (UKO's ``label_in_keystore``), as the key's name (the template's naming
#: scheme applied) must be to be one there: (pattern the name must match whole, the rule in words). AWS KMS: the
#: key's alias ``alias/<name>`` (256 characters at most; ``alias/aws/`` is AWS's own, ``alias/keyorch/`` keyorch's
#: identity alias); Azure Key Vault and Cloud KMS: the key's name; Key Protect: the key's name (names are not unique
#: there: the key's identity is its ``keyorch-<id>`` alias). No name is ever changed to fit: one that breaks the
#: rule is refused when the key is made.
NAME_RULES: dict[KeystoreType, tuple[re.Pattern[str], str]] = {
    KeystoreType.AWS_KMS: (
        re.compile(r"(?!(?i:aws|keyorch)/)[A-Za-z0-9/_-]{1,250}"),
        "AWS KMS aliases are alias/ and then 1-250 letters, digits, '/', '_' or '-', not starting with aws/ "
        "(AWS's own) or keyorch/ (keyorch's identity aliases)",
    ),
    KeystoreType.AZURE_KEY_VAULT: (
        re.compile(r"[A-Za-z0-9-]{1,127}"),
        "Azure Key Vault key names are 1-127 letters, digits or '-'",
    ),
    KeystoreType.GOOGLE_KMS: (
        re.compile(r"[A-Za-z0-9_-]{1,63}"),
        "Cloud KMS cryptoKeyIds are 1-63 letters, digits, '_' or '-'",
    ),
    KeystoreType.IBM_KEY_PROTECT: (
        re.compile(r"[A-Za-z0-9 ._-]{2,50}"),
        "Key Protect key names are 2-50 letters, digits, spaces, '.', '_' or '-'",
    ),
}
AWS_ALIAS_PREFIX = "alias/"


def check_label_in_keystore(kind: KeystoreType, name: str, keystore: str) -> str:
    """What a keystore of type ``kind`` (named ``keystore``) will call a key named ``name``: the AWS alias
    ``alias/<name>``, else ``name``; a name the type's rule refuses is bad input naming the label, the type and the
    rule."""
    pattern, rule = NAME_RULES[kind]
    if not pattern.fullmatch(name):
        raise InvalidInput(
            f"the key's name {shown(name)} (its template's naming scheme applied to its label) cannot name a key in "
            f"keystore {keystore} of type {kind}: {rule}",
            target="label",
        )
    return AWS_ALIAS_PREFIX + name if kind is KeystoreType.AWS_KMS else name


def labels_ignore_case(kind: KeystoreType) -> bool:
    """Whether a keystore of type ``kind`` takes two names that differ only in case for one (Key Vault does)."""
    return kind is KeystoreType.AZURE_KEY_VAULT


def check_algorithm(algorithm: str, size: int, keystore_types: Mapping[str, KeystoreType]) -> tuple[str, int]:
    """``keystore_types`` maps a keystore's name to its type; each must support the algorithm and size."""
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        raise InvalidInput(
            f"algorithm {algorithm!r} is not supported; choose one of: {', '.join(ALGORITHMS)}", target="algorithm"
        )
    if size not in ALGORITHMS[algorithm]:
        sizes = ", ".join(str(s) for s in sorted(ALGORITHMS[algorithm]))
        raise InvalidInput(f"size {size} is not valid for {algorithm}; choose one of: {sizes}", target="size")
    for name, kind in keystore_types.items():
        supported = ALGORITHM_SUPPORT[kind].get(algorithm, frozenset())
        if size not in supported:
            offer = ", ".join(f"{a} {'/'.join(str(s) for s in sorted(v))}" for a, v in ALGORITHM_SUPPORT[kind].items())
            raise InvalidInput(
                f"keystore {name} ({kind}) cannot hold {algorithm} {size} keys; it supports: {offer}",
                target="keystore",
            )
    return algorithm, size


def parse_keystore_type(value: str) -> KeystoreType:
    try:
        return KeystoreType(value)
    except ValueError:
        raise InvalidInput(
            f"keystore type {shown(value)} is not supported; choose one of: {', '.join(t.value for t in KeystoreType)}",
            target="type",
        ) from None


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, allow_insecure_http: bool) -> str:
    given = shown(redact_url(endpoint))
    check_text("endpoint", endpoint, display=redact_url(endpoint))
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"endpoint {given} is not a valid URL; give https://HOST[:PORT][/PATH]", target="endpoint")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput(
            f"endpoint for host {parts.hostname!r} must not carry credentials, a query or a fragment",
            target="endpoint",
        )
    if parts.scheme == "http":
        if not allow_insecure_http:
            raise InvalidInput(
                f"endpoint {given} uses plain http://; use https:// or pass --allow-insecure-http "
                "(allowed only for a loopback address)",
                target="endpoint",
            )
        if not is_loopback_host(parts.hostname):
            raise InvalidInput(
                f"plain HTTP is allowed only to a loopback address (127.0.0.0/8, ::1, localhost); endpoint host "
                f"{parts.hostname!r} needs https://",
                target="endpoint",
            )
    return endpoint.rstrip("/")


_FIELDS_BY_TYPE: dict[KeystoreType, tuple[set[str], set[str]]] = {
    # (required, optional) connection fields
    KeystoreType.AWS_KMS: ({"region"}, {"endpoint"}),
    KeystoreType.AZURE_KEY_VAULT: ({"endpoint"}, set()),
    KeystoreType.GOOGLE_KMS: ({"project", "location", "key_ring"}, {"endpoint"}),
    KeystoreType.IBM_KEY_PROTECT: ({"instance_id"}, {"region", "endpoint"}),
}

_OPTION_NAMES = {
    "endpoint": "--endpoint",
    "region": "--region",
    "project": "--project",
    "location": "--location",
    "key_ring": "--key-ring",
    "instance_id": "--instance-id",
}


def connection_settings(
    kind: KeystoreType,
    given: Mapping[str, str | None],
    *,
    allow_insecure_http: bool = False,
    ca_pem: str | None = None,
) -> dict[str, Any]:
    """Validate the connection fields for a keystore type and return its settings record."""
    required, optional = _FIELDS_BY_TYPE[kind]
    present = {k: v for k, v in given.items() if v not in (None, "")}
    extra = sorted(set(present) - required - optional)
    if extra:
        names = ", ".join(_OPTION_NAMES.get(e, e) for e in extra)
        raise InvalidInput(f"{names} does not apply to a keystore of type {kind}", target=extra[0])
    missing = sorted(required - set(present))
    if kind is KeystoreType.IBM_KEY_PROTECT and "region" not in present and "endpoint" not in present:
        missing.append("region")
    if missing:
        names = ", ".join(_OPTION_NAMES.get(m, m) for m in missing)
        raise InvalidInput(f"a keystore of type {kind} needs {names}", target=missing[0])
    settings: dict[str, Any] = {}
    for key, value in present.items():
        assert value is not None
        settings[key] = _check_field(key, value, allow_insecure_http)
    settings["allow_insecure_http"] = allow_insecure_http
    if ca_pem is not None:
        settings["ca_pem"] = ca_pem
    return settings


def _check_field(key: str, value: str, allow_insecure_http: bool) -> str:
    if key == "endpoint":
        return check_endpoint(value, allow_insecure_http)
    checks: dict[str, tuple[re.Pattern[str], str]] = {
        "region": (_REGION_RE, "a region such as us-east-1 or us-south"),
        "project": (_GCP_PROJECT_RE, "a Google Cloud project id (6-30 lowercase letters, digits or '-')"),
        "location": (_GCP_ID_RE, "a location such as us-east1 or global"),
        "key_ring": (_GCP_ID_RE, "1-63 letters, digits, '_' or '-'"),
        "instance_id": (_INSTANCE_RE, "the Key Protect instance id (letters, digits and '-')"),
    }
    pattern, allowed = checks[key]
    if not pattern.fullmatch(value):
        raise InvalidInput(f"{_OPTION_NAMES[key]} {shown(value)} is not valid: expected {allowed}", target=key)
    return value
