"""Benchmark: a one-shot `keyorch sync-key KEY` (one key, four keystores) next to one
`aws kms describe-key` (the AWS CLI) against the same fake, both as real subprocesses.

Issue 19's target: the one-shot takes no longer than the AWS CLI's single call. Prints, for each
command, the median and best wall time over the runs and the CPU (user + system) per run, then the
modules `keyorch sync-key` spends most import time in (``python -X importtime``, cumulative).

    .venv/bin/python bench/startup.py              # 10 runs each
    .venv/bin/python bench/startup.py --runs 20

Everything goes through the CLI as a user runs it: `keyorch fakes serve` (plain loopback HTTP), a
SQLite file, `keyorch init`, `keystore connect` for the four fakes, a template over the four, one key
made active and synced once (so that the measured runs find it in sync and only read).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS = ("aws_kms", "azure_key_vault", "google_kms", "ibm_key_protect")
KEYORCH = [sys.executable, "-m", "keyorch"]


def run(argv: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} … exited {done.returncode}: {done.stderr.strip()[:400]}")
    return done


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], float]:
    """Wall seconds of each run, and the mean CPU seconds (user + system) of one run."""
    walls: list[float] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        started = time.perf_counter()
        run(argv, env)
        walls.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return walls, cpu / runs


def import_profile(argv: list[str], env: dict[str, str], top: int) -> list[tuple[float, str]]:
    """The modules with the largest cumulative import time in one run of ``argv``: (ms, module)."""
    done = run([sys.executable, "-X", "importtime", *argv[1:]], env)
    found: list[tuple[float, str]] = []
    total = 0.0
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m is None:
            continue
        ms, depth = int(m.group(1)) / 1000, (len(m.group(2)) - 1) // 2
        total += ms if depth == 0 else 0.0
        if ms >= 10:
            found.append((ms, f"{'  ' * depth}{m.group(3)}"))
    found.sort(reverse=True)
    return [(total, "(all)"), *found[:top]]


def setup(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any], dict[str, str], str]:
    fakes = subprocess.Popen(
        [*KEYORCH, "fakes", "serve", "--credentials-dir", str(workdir / "creds")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert fakes.stdout is not None
    described: dict[str, Any] = json.loads(fakes.stdout.readline())
    env = {
        **os.environ,
        "KEYORCH_DATABASE_URL": f"sqlite:///{workdir / 'keyorch.db'}",
        "KEYORCH_MASTER_KEY_FILE": str(workdir / "master.key"),
        "KEYORCH_USER": "bench",
        "KEYORCH_LOG_FORMAT": "json",
    }
    run([*KEYORCH, "master-key", "generate", "--out", str(workdir / "master.key")], env)
    run([*KEYORCH, "init"], env)
    run([*KEYORCH, "vault", "create", "bench"], env)
    for kind in KINDS:
        run([*KEYORCH, "keystore", "connect", "--vault", "bench", "--name", kind, *described[kind]["connect"]], env)
    stores = [arg for kind in KINDS for arg in ("--keystore", kind)]
    run([*KEYORCH, "template", "create", "--vault", "bench", "--name", "t", *stores], env)
    made = run(
        [*KEYORCH, "--output", "json", "key", "create", "--template", "t", "--label", "one", "--state", "active"], env
    )
    key_id = str(json.loads(made.stdout)["id"])
    run([*KEYORCH, "sync-key", key_id], env)
    return fakes, described, env, key_id


def main(runs: int, top: int) -> None:
    aws = shutil.which("aws")
    workdir = Path(tempfile.mkdtemp(prefix="keyorch-startup-"))
    fakes, described, env, key_id = setup(workdir)
    try:
        creds = json.loads((workdir / "creds" / "aws_kms.json").read_text())
        aws_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": creds["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        sync = [*KEYORCH, "sync-key", key_id]
        results = {"keyorch --help": timed([*KEYORCH, "--help"], env, runs), "keyorch sync-key": timed(sync, env, runs)}
        if aws:
            describe = [aws, "kms", "describe-key", "--key-id", f"alias/keyorch/{key_id}"]
            describe += ["--endpoint-url", described["aws_kms"]["endpoint"]]
            results["aws kms describe-key"] = timed(describe, aws_env, runs)
        print(f"one key on {len(KINDS)} keystores, {runs} runs each, on {os.cpu_count()} cores")
        print(f"{'command':24} {'median s':>9} {'best s':>8} {'CPU s/run':>10}")
        for name, (walls, cpu) in results.items():
            print(f"{name:24} {statistics.median(walls):9.3f} {min(walls):8.3f} {cpu:10.3f}")
        if aws:
            ratio = statistics.median(results["keyorch sync-key"][0]) / statistics.median(
                results["aws kms describe-key"][0]
            )
            print(f"sync-key / describe-key (median wall): {ratio:.2f}x (target: at most 1.00x)")
        else:
            print("the AWS CLI (`aws`) is not installed: no side-by-side figure")
        print(f"\nimport time of `keyorch sync-key` (cumulative ms, top {top}):")
        for ms, module in import_profile(sync, env, top):
            print(f"{ms:9.1f}  {module}")
    finally:
        fakes.terminate()
        fakes.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--top", type=int, default=15, help="modules shown in the import profile (default 15)")
    options = parser.parse_args()
    main(options.runs, options.top)
