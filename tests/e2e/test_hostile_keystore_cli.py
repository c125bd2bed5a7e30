"""``keyorch sync-key`` on a key whose keystores trickle their answers or nest them 100,000 deep.

Issue 11, point 8: the trickling keystore was read forever (a socket read timeout per byte, no
total deadline) and the nested answer raised ``RecursionError``: ``sync-key`` hung, or exited 70
naming a Python exception. Now the trickle ends at the call deadline (1 s here, through
``KEYORCH_RECONCILE__CALL_TIMEOUT_SECONDS``) and the nested body is a malformed answer: ``sync-key``
exits 4 (a keystore could not be reached, as its help says) with one sentence per keystore naming
it and what went wrong, no traceback, and the key's healthy keystore is reconciled all the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.e2e.harness import EXPECTED, AsyncCli, provider_states
from tests.e2e.hostile import HostileKeystore

from keyorch.fakes.registry import FakeCluster, connect_args, start_fakes, write_credentials

EXIT_UNREACHABLE = 4
HEALTHY = "azure_key_vault"
#: what each hostile keystore's sentence must say
SAYS = {"trickling": "no complete answer within 1 s (call_timeout_seconds", "nested": "nests deeper than 64 levels"}


@pytest.fixture
async def hostile() -> AsyncIterator[dict[str, HostileKeystore]]:
    keystores = {
        "trickling": await HostileKeystore("trickle").start(),
        "nested": await HostileKeystore("nested").start(),
    }
    try:
        yield keystores
    finally:
        for keystore in keystores.values():
            await keystore.close()


@pytest.fixture
async def cluster() -> AsyncIterator[FakeCluster]:
    fakes = await start_fakes((HEALTHY,))
    try:
        yield fakes
    finally:
        await fakes.stop()


def table_column(text: str, key: str, column: str) -> dict[str, str]:
    """``column`` of each row of a printed table, by the row's ``key`` cell (wrapped cells joined)."""
    header: list[str] = []
    rows: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("┃│").split("┃" if "┃" in line else "│")]
        if "┃" in line and not header:
            header = cells
        elif "│" in line and header:
            current = cells[header.index(key)] or current
            rows.setdefault(current, []).append(cells[header.index(column)])
    return {name: " ".join(part for part in parts if part) for name, parts in rows.items()}


async def test_sync_key_on_hostile_keystores_exits_4_with_one_sentence_each(
    tmp_path: Path, cluster: FakeCluster, hostile: dict[str, HostileKeystore]
) -> None:
    cli = AsyncCli(tmp_path, extra_env={"KEYORCH_RECONCILE__CALL_TIMEOUT_SECONDS": "1"})
    assert (await cli("init")).code == 0
    await cli.ok("vault", "create", "main")
    credentials = write_credentials(cluster, tmp_path / "credentials")
    healthy = connect_args(HEALTHY, cluster[HEALTHY], credentials[HEALTHY])
    await cli.ok("keystore", "connect", "--vault", "main", "--name", "healthy", *healthy)
    for name, keystore in hostile.items():
        args = keystore.connect_args(tmp_path / f"{name}.json")
        await cli.ok("keystore", "connect", "--vault", "main", "--name", name, *args)
    await cli.ok(
        "template", "create", "--vault", "main", "--name", "mixed", "--keystore", "healthy",
        "--keystore", "trickling", "--keystore", "nested", "--naming-scheme", "H-{label}", "--state", "active",
    )  # fmt: skip
    key_id = (await cli.ok("key", "create", "--template", "mixed", "--label", "k"))["id"]

    shown = await cli("sync-key", key_id, output_json=False)  # AsyncCli fails on any traceback
    result = await cli("sync-key", key_id)

    assert all(keystore.requests > 0 for keystore in hostile.values()), "a hostile keystore was never asked"
    for run in (shown, result):
        assert run.code == EXIT_UNREACHABLE, str(run)
        assert "Error" not in run.err and "internal error" not in run.out + run.err, str(run)
    doc = result.json()
    assert doc["exit_code"] == EXIT_UNREACHABLE
    targets = {t["keystore_name"]: t for t in doc["targets"]}
    assert targets["healthy"]["sync_flag"] == "in_sync", doc
    assert provider_states(cluster, key_id)[HEALTHY] == EXPECTED["active"][HEALTHY]
    assert set(doc["keystores_down"]) == {targets["trickling"]["keystore"], targets["nested"]["keystore"]}, doc
    shown_errors = table_column(shown.out, "keystore", "error")
    for name, says in SAYS.items():
        target = targets[name]
        assert target["reason"] == "connection_error" and target["sync_flag"] == "out_of_sync", target
        sentence = doc["keystores_down"][target["keystore"]]
        assert sentence == target["error"], doc
        assert sentence.startswith(f"keystore {name} ") and says in sentence and "\n" not in sentence, sentence
        assert "Recursion" not in sentence and "Traceback" not in sentence, sentence
        assert shown_errors[name] == sentence, shown.out  # the table a person reads says the same
