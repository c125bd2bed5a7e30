"""Reading AWS JSON 1.1 request members the way KMS does.

A member of the wrong JSON type is a ``SerializationException``; a member that breaks a model
constraint (required, length, range) is a ``ValidationException`` worded like AWS's
("1 validation error detected: Value ... at 'keyId' failed to satisfy constraint: ...").
Unknown members are ignored, and ``null`` counts as absent, as on the real service.
Values are never echoed for blobs, and long strings are cut, so no secret reaches a message.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from keyorch.fakes.base import FakeError

MAX_TAGS_PER_REQUEST = 50


def serialization_error(message: str) -> FakeError:
    return FakeError(400, "SerializationException", message)


def validation_error(message: str) -> FakeError:
    return FakeError(400, "ValidationException", message)


def _wire_name(name: str) -> str:
    return name[:1].lower() + name[1:]


def _constraint(name: str, value: object, rule: str) -> FakeError:
    shown = "null" if value is None else f"'{str(value)[:64]}'"
    return validation_error(
        f"1 validation error detected: Value {shown} at '{_wire_name(name)}' failed to satisfy constraint: {rule}"
    )


def _whole(value: float) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value == int(value))


class Members:
    """Typed access to the members of one request body."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    def _raw(self, name: str, required: bool) -> Any:
        value = self._doc.get(name)
        if value is None and required:
            raise _constraint(name, None, "Member must not be null")
        return value

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int = 1,
        max_len: int = 2048,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise serialization_error(f"Expected a string for member '{name}'.")
        if len(value) < min_len:
            raise _constraint(name, value, f"Member must have length greater than or equal to {min_len}")
        if len(value) > max_len:
            raise _constraint(name, value, f"Member must have length less than or equal to {max_len}")
        if pattern is not None and not pattern.fullmatch(value):
            raise _constraint(name, value, f"Member must satisfy regular expression pattern: {pattern.pattern}")
        return value

    def required_string(self, name: str, *, max_len: int = 2048, pattern: re.Pattern[str] | None = None) -> str:
        value = self.string(name, required=True, max_len=max_len, pattern=pattern)
        assert value is not None
        return value

    def enum(self, name: str, allowed: frozenset[str] | set[str], default: str | None = None) -> str | None:
        value = self.string(name, max_len=256)
        if value is None:
            return default
        if value not in allowed:
            choices = ", ".join(sorted(allowed))
            raise _constraint(name, value, f"Member must satisfy enum value set: [{choices}]")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self._raw(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not _whole(value):
            raise serialization_error(f"Expected an integer for member '{name}'.")
        number = int(value)
        if number < minimum:
            raise _constraint(name, number, f"Member must have value greater than or equal to {minimum}")
        if number > maximum:
            raise _constraint(name, number, f"Member must have value less than or equal to {maximum}")
        return number

    def boolean(self, name: str) -> bool | None:
        value = self._raw(name, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise serialization_error(f"Expected a boolean for member '{name}'.")
        return value

    def blob(self, name: str, *, required: bool = False, max_len: int) -> bytes | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise serialization_error(f"Expected a base64 string for member '{name}'.")
        try:
            raw = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise serialization_error(f"Member '{name}' is not valid base64.") from exc
        if not raw:
            raise _constraint(name, None, "Member must have length greater than or equal to 1")
        if len(raw) > max_len:
            raise _constraint(name, None, f"Member must have length less than or equal to {max_len}")
        return raw

    def string_list(self, name: str, *, required: bool = False, max_items: int = 50) -> list[str]:
        value = self._raw(name, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise serialization_error(f"Expected a list of strings for member '{name}'.")
        if len(value) > max_items:
            raise _constraint(name, None, f"Member must have length less than or equal to {max_items}")
        return list(value)

    def string_map(self, name: str) -> dict[str, str]:
        value = self._raw(name, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise serialization_error(f"Expected a map of strings for member '{name}'.")
        return dict(value)

    def tags(self, name: str, *, required: bool = False) -> list[tuple[str, str]]:
        """A ``[{TagKey, TagValue}]`` list; reserved or duplicate keys are a ``TagException``."""
        value = self._raw(name, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise serialization_error(f"Expected a list of tag structures for member '{name}'.")
        if len(value) > MAX_TAGS_PER_REQUEST:
            raise _constraint(name, None, f"Member must have length less than or equal to {MAX_TAGS_PER_REQUEST}")
        tags: list[tuple[str, str]] = []
        for item in value:
            tag = Members(item)
            key = tag.required_string("TagKey", max_len=128)
            text = tag.string("TagValue", required=True, min_len=0, max_len=256)
            assert text is not None
            if key.lower().startswith("aws:"):
                raise FakeError(400, "TagException", "Tag keys beginning with 'aws:' are reserved.")
            if any(key == seen for seen, _ in tags):
                raise FakeError(400, "TagException", f"Duplicate tag key '{key[:128]}' in the request.")
            tags.append((key, text))
        return tags
