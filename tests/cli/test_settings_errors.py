"""Every setting, given a malformed value through the environment and through a --config file, is refused
by a real `keyorch` process: exit 2, one sentence naming the setting, the value and what is allowed.

The settings are enumerated from the settings model itself, and the malformed values derived from each
setting's type and range, so that a setting added later is covered without a word changed here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from keyorch.crypto import generate_master_key
from keyorch.settings import Settings
from keyorch.settings_errors import URL_VALUE

SECRET_PASSWORD = "s3cr3t-pw"
URL_WITH_USERINFO = f"ftp://alice:{SECRET_PASSWORD}@db.example.internal/keyorch"
#: an offset, not a duration (and on its way out): its range is checked where the clock is made
NOT_A_DURATION: set[tuple[str, ...]] = set()


@dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]
    annotation: Any
    metadata: tuple[Any, ...]

    @property
    def env(self) -> str:
        return "KEYORCH_" + "__".join(p.upper() for p in self.path)

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def secret(self) -> bool:
        return self.annotation is SecretStr

    def bounds(self) -> tuple[float | None, float | None]:
        low = next((float(m.ge) for m in self.metadata if isinstance(m, annotated_types.Ge)), None)
        low = next((float(m.gt) for m in self.metadata if isinstance(m, annotated_types.Gt)), low)
        high = next((float(m.le) for m in self.metadata if isinstance(m, annotated_types.Le)), None)
        high = next((float(m.lt) for m in self.metadata if isinstance(m, annotated_types.Lt)), high)
        return low, high


def unwrap(annotation: Any, metadata: list[Any]) -> Any:
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            metadata.extend(extra)
        elif get_origin(annotation) in (Union, type(int | None)):
            (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
        else:
            return annotation


def is_group(field: FieldInfo) -> bool:
    annotation = unwrap(field.annotation, [])
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def settings_leaves(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    for name, field in model.model_fields.items():
        if is_group(field):
            yield from settings_leaves(unwrap(field.annotation, []), (*prefix, name))
        else:
            metadata = list(field.metadata)
            annotation = unwrap(field.annotation, metadata)
            yield Leaf((*prefix, name), annotation, tuple(metadata))


def groups() -> list[str]:
    return [name for name, field in Settings.model_fields.items() if is_group(field)]


def out_of_range(leaf: Leaf) -> list[float]:
    low, high = leaf.bounds()
    values: list[float] = []
    if low is not None:
        values.append(1e-9 if low > 0 else low - 1)  # 1e-9: the busy loop of issue 12
    if high is not None:
        values.append(high * 10 + 1)
    return [int(v) if leaf.annotation is int and v == int(v) else v for v in values]


def env_values(leaf: Leaf) -> list[str]:
    """Malformed values for the setting's environment variable."""
    ann = leaf.annotation
    origin = get_origin(ann)
    if origin is Literal:
        return ["nope"]
    if ann is bool:
        return ["maybe"]
    if ann in (int, float):
        return ["many" if ann is int else "soon", *(repr(v) for v in out_of_range(leaf))]
    if origin is list:
        bad = [URL_WITH_USERINFO] if is_url_list(ann) else ["bad\x01value"]
        return ["notjson", '{"not": "a list"}', json.dumps(bad)]
    if origin is dict:
        return ["notjson", "[1]"]
    if ann is SecretStr:
        return ["not base64!"]
    assert ann is str, f"{leaf.dotted}: a new kind of setting ({ann}); teach this test its malformed values"
    values = ["bad\x01value"]
    if URL_VALUE in leaf.metadata:
        values.append(URL_WITH_USERINFO)
    return values


def is_url_list(annotation: Any) -> bool:
    metadata: list[Any] = []
    unwrap(get_args(annotation)[0], metadata)
    return URL_VALUE in metadata


def yaml_values(leaf: Leaf) -> list[Any]:
    """Malformed values for the setting in a --config file: of the wrong type, or out of range."""
    origin = get_origin(leaf.annotation)
    if origin is list:
        return ["notalist", [{"not": "an item"}]]
    if origin is dict:
        return ["notamapping"]
    values: list[Any] = [{"not": "a scalar"}]
    if leaf.annotation in (int, float):
        values.extend(out_of_range(leaf))
    elif leaf.annotation is str:
        values.append("bad\x01value")
        if URL_VALUE in leaf.metadata:
            values.append(URL_WITH_USERINFO)
    elif get_origin(leaf.annotation) is Literal:
        values.append("nope")
    return values


@dataclass(frozen=True)
class Case:
    name: str  # the setting, as the message must name it
    env: dict[str, str]
    config: dict[str, Any] | None
    shown: str | None  # the value as the message must show it (None: a secret, never shown)
    drop_env: str | None = None


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An initialized database and a master key: with them, `vault list` succeeds."""
    home = tmp_path_factory.mktemp("settings-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KEYORCH_DATABASE_URL": f"sqlite:///{home / 'keyorch.db'}",
        "KEYORCH_MASTER_KEY": generate_master_key(),
        "KEYORCH_USER": "alice",
    }
    init = run(env, "init")
    assert init.returncode == 0, init.stderr
    assert run(env, "vault", "list").returncode == 0
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "keyorch", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def shown(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else repr(value)[1:-1]


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: Any = value
    for part in reversed(path):
        doc = {part: doc}
    assert isinstance(doc, dict)
    return doc


def decoded(value: str) -> bool:
    """Whether the environment's value is a JSON list or mapping (an error then shows the part that is bad)."""
    try:
        return isinstance(json.loads(value), list | dict)
    except ValueError:
        return False


def cases() -> list[Case]:
    found: list[Case] = []
    for leaf in settings_leaves():
        for value in env_values(leaf):
            expect = None if leaf.secret or decoded(value) else value
            found.append(Case(leaf.env, {leaf.env: value}, None, expect))
        for item in yaml_values(leaf):
            expect = None if leaf.secret or isinstance(item, list) else item
            found.append(Case(leaf.dotted, {}, nested(leaf.path, item), expect, leaf.env))
    for group in groups():
        env = "KEYORCH_" + group.upper()
        found += [Case(env, {env: "notjson"}, None, "notjson"), Case(env, {env: "3"}, None, "3")]
        found.append(Case(group, {}, {group: "notagroup"}, "notagroup"))
        found.append(Case(f"{env}__NOPE", {f"{env}__NOPE": "1"}, None, None))
        found.append(Case(f"{group}.nope", {}, {group: {"nope": 1}}, None))
    found.append(Case("nope", {}, {"nope": 1}, None))
    return found


def check(case: Case, result: subprocess.CompletedProcess[str], config: str | None) -> list[str]:
    problems: list[str] = []
    err = result.stderr.strip()
    if result.returncode != 2:
        problems.append(f"exit {result.returncode}")
    if "Traceback" in result.stderr or len(err.splitlines()) != 1 or not err.startswith("error: "):
        problems.append("not one line 'error: …'")
    if result.stdout.strip():
        problems.append("printed on stdout")
    if case.name not in err:
        problems.append(f"does not name {case.name}")
    if config is not None and config not in err:
        problems.append("does not say the file it is in")
    if case.shown is not None and URL_WITH_USERINFO not in str(case.shown) and shown(case.shown) not in err:
        problems.append(f"does not show the value {shown(case.shown)}")
    if SECRET_PASSWORD in err or "alice:" in err or "not base64!" in err:
        problems.append("shows a secret or a URL's user-info")
    if not any(word in err for word in ("give", "choose", "generate", "the settings there are", "needs")):
        problems.append("does not say what is allowed")
    return [f"{case.name}={case.shown!r}: {p}\n    {err[:400]}" for p in problems]


def test_every_setting_refuses_a_malformed_value_in_one_sentence(base: dict[str, str], tmp_path: Path) -> None:
    all_cases = cases()
    assert len({c.name for c in all_cases}) > len(Settings.model_fields)  # nested settings are in too

    def one(index_case: tuple[int, Case]) -> list[str]:
        index, case = index_case
        env = {k: v for k, v in base.items() if k != case.drop_env}
        env.update(case.env)
        args = ["vault", "list"]
        config = None
        if case.config is not None:
            path = tmp_path / f"case{index}.yaml"
            path.write_text(yaml.safe_dump(case.config), encoding="utf-8")
            config = str(path)
            args = ["--config", config, *args]
        return check(case, run(env, *args), config)

    with ThreadPoolExecutor(max_workers=3) as pool:
        problems = [p for found in pool.map(one, enumerate(all_cases)) for p in found]
    assert not problems, f"{len(problems)} of {len(all_cases)} cases:\n" + "\n".join(problems)


def test_every_duration_has_a_sane_range_stated_in_its_error(base: dict[str, str]) -> None:
    durations = [leaf for leaf in settings_leaves() if leaf.path[-1].endswith("_seconds")]
    durations = [leaf for leaf in durations if leaf.path not in NOT_A_DURATION]
    assert any(leaf.path == ("reconcile", "resync_interval_seconds") for leaf in durations)
    for leaf in durations:
        low, high = leaf.bounds()
        assert low is not None and low >= 0 and high is not None and math.isfinite(high), leaf.dotted
        assert high <= 86_400, f"{leaf.dotted}: up to {high} s"
    busy = [leaf for leaf in durations if leaf.path[-1] in ("resync_interval_seconds", "max_backoff_seconds")]
    for leaf in [*busy, *(d for d in durations if (d.bounds()[0] or 0) > 0)]:
        low, high = leaf.bounds()
        assert low is not None and low >= (1 if leaf in busy else 0), f"{leaf.dotted} may be {low} s"
        result = run({**base, leaf.env: "1e-9"}, "vault", "list")
        assert result.returncode == 2, result.stderr
        assert f"from {low:g} to {high:g}" in result.stderr, result.stderr


def test_tokens_that_are_not_json_are_a_settings_error_not_a_bug(base: dict[str, str]) -> None:
    result = run({**base, "KEYORCH_API__TOKENS": "notjson"}, "vault", "list")
    assert result.returncode == 2, result.stderr
    assert "please report" not in result.stderr and "internal error" not in result.stderr
    assert result.stderr.startswith("error: setting api.tokens (env KEYORCH_API__TOKENS) is 'notjson'")
