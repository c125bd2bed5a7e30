"""Issue 12, point 14: `keyorch reconcile --once` on a terminal, a real subprocess on a pseudo-terminal.

The progress bar is drawn on stderr; log lines go through the same console, printed above the bar,
never into it. Per-action lines ("action done", one per provider call) are debug unless ``--verbose``;
the end summary counts the actions, which the audit trail records one by one.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.e2e.harness import KINDS, AsyncCli, setup_world, start_world_fakes

from keyorch.fakes.registry import FakeCluster

#: CSI sequences (cursor moves, erases, colours) and OSC titles: what a terminal acts on, not text.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-B]")
KEYS_PER_RUN = 6


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[AsyncCli]:
    cluster: FakeCluster
    cluster, credentials, _ = await start_world_fakes(tmp_path)
    try:
        cli = AsyncCli(tmp_path)
        await setup_world(cli, cluster, credentials, template_state="active")
        yield cli
    finally:
        await cluster.stop()


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def _on_terminal(cli: AsyncCli, *args: str) -> tuple[int, list[str]]:
    """Run ``keyorch ARGS`` with stdin, stdout and stderr on one pseudo-terminal (120 columns); the exit
    code and the screen's lines as a terminal shows them (each line's text after its last carriage return)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**cli.env(), "TERM": "xterm-256color", "COLUMNS": "120"}
    proc = await asyncio.create_subprocess_exec(
        *cli.argv(*args, output_json=False), cwd=cli.workdir, env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    try:
        raw = await asyncio.wait_for(asyncio.to_thread(_read_all, leader), 180)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        os.close(leader)
    text = raw.decode(errors="replace")
    assert "Traceback" not in text, text
    return code, [
        _CONTROL.sub("", line.split("\r")[-1] if line.split("\r")[-1].strip() else line)
        for line in text.replace("\r\n", "\n").split("\n")
    ]


async def _new_keys(cli: AsyncCli, prefix: str) -> None:
    for i in range(KEYS_PER_RUN):
        await cli.ok("key", "create", "--template", "everywhere", "--label", f"{prefix}-{i}")


def _reconciler_calls(records: list[dict[str, object]]) -> int:
    return sum(1 for r in records if r["source"] == "reconciler" and r["outcome"] == "succeeded")


async def test_log_lines_go_above_the_bar_and_per_action_lines_need_verbose(world: AsyncCli) -> None:
    cli = world
    await _new_keys(cli, "quiet")
    code, lines = await _on_terminal(cli, "reconcile", "--once")
    assert code == 0, "\n".join(lines)
    assert not [line for line in lines if "action done" in line], "\n".join(lines)
    calls = _reconciler_calls(await cli.ok("audit", "list", "--limit", "100000"))
    assert calls >= KEYS_PER_RUN * len(KINDS)  # every key created in every keystore
    summary = [line for line in lines if re.search(r"│\s*\d+\s*│", line)]
    assert summary, "\n".join(lines)
    cells = [c.strip() for c in summary[0].split("│") if c.strip()]
    assert cells[:4] == [str(KEYS_PER_RUN), str(KEYS_PER_RUN), "0", str(calls)], summary[0]

    await _new_keys(cli, "loud")
    code, lines = await _on_terminal(cli, "--verbose", "reconcile", "--once")
    assert code == 0, "\n".join(lines)
    done = [line for line in lines if "action done" in line]
    after = _reconciler_calls(await cli.ok("audit", "list", "--limit", "100000"))
    assert len(done) == after - calls, "\n".join(lines)  # one line per provider call, each a line of its own
    assert not [line for line in done if "reconciling" in line or "━" in line], "\n".join(done)
    assert all(line.lstrip().startswith("20") for line in done), "\n".join(done)  # from column 0: a timestamp
