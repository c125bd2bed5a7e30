"""Issue 13, point 3: SQLite stays single-daemon, and says so.

Real ``keyorch serve`` subprocesses on a real SQLite file: a second daemon on the same file refuses to
start (exit 2, one sentence naming the file and the first daemon's pid); a one-shot command still
works beside the running daemon; once the first daemon is SIGKILLed (no cleanup at all), a new one
starts, because the kernel drops a dead process's ``flock``."""

from __future__ import annotations

import asyncio
import signal
import stat
import sys
from pathlib import Path

from tests.daemon.harness import DaemonProcess, clean_env, write_config


async def one_shot(workdir: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyorch",
        *args,
        cwd=workdir,
        env=clean_env(workdir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def test_a_second_serve_on_one_sqlite_file_refuses_and_one_shots_still_work(tmp_path: Path) -> None:
    database = tmp_path / "k.db"
    config = write_config(tmp_path / "keyorch.yaml", f"sqlite:///{database}")
    first = await DaemonProcess.start(tmp_path, config)
    second: DaemonProcess | None = None
    third: DaemonProcess | None = None
    try:
        lock = tmp_path / "k.db.serve.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text().strip() == str(first.proc.pid)

        second = await DaemonProcess.start(tmp_path, config, wait=False)
        assert await second.wait(60) == 2
        errors = [line for line in second.lines if line.strip()]
        assert len(errors) == 1, second.output  # one sentence, no traceback
        assert str(database) in errors[0] and f"pid {first.proc.pid}" in errors[0]
        assert "PostgreSQL" in errors[0] and "Traceback" not in second.output

        code, out, err = await one_shot(tmp_path, "--config", str(config), "vault", "create", "payments")
        assert code == 0, err
        code, out, err = await one_shot(tmp_path, "--config", str(config), "vault", "list")
        assert code == 0, err
        assert "payments" in out

        first.signal(signal.SIGKILL)
        assert await first.wait(30) == -signal.SIGKILL
        third = await DaemonProcess.start(tmp_path, config)  # the dead daemon's lock went with it
        assert lock.read_text().strip() == str(third.proc.pid)
        third.signal(signal.SIGTERM)
        assert await third.wait(30) == 0
    finally:
        for daemon in (first, second, third):
            if daemon is not None:
                await daemon.kill()
