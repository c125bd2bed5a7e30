"""deploy/Dockerfile, checked without docker: its instructions are parsed and its RUN steps run.

Each stage gets a directory standing for its filesystem; the absolute paths the Dockerfile
names (WORKDIR, COPY, venv targets) are rewritten into it, and a fresh virtual environment
stands for the base image's Python. Every RUN command runs, except ``useradd`` and ``chown``,
which would change this machine's users and file owners; those are syntax-checked with
``bash -n``. Then the console script the ENTRYPOINT names must run, and the HEALTHCHECK command
must pass against a server answering 200 on /healthz and fail against one answering 503.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.deploy.dockerfile import DOCKERFILE, Stage, parse
from tests.deploy.settings_names import setting_path

from keyorch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN_HERE = ("useradd", "chown")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arg
    return value


def test_the_image_is_shaped_as_documented(stages: list[Stage]) -> None:
    builder, runtime = stages
    assert builder.name == "builder" and builder.base == runtime.base == "python:3.11-slim"
    assert any("pip wheel" in run for run in builder.all("RUN"))
    assert runtime.all("COPY") == ["--from=builder /wheels /wheels"], "the runtime gets only the wheels"
    (user,) = runtime.all("USER")
    assert user.split(":")[0] not in ("0", "root")
    assert runtime.all("VOLUME") == ["/var/lib/keyorch"]
    assert runtime.all("EXPOSE") == ["8080"]
    assert exec_form(runtime.all("ENTRYPOINT")[0]) == ["keyorch"]
    assert exec_form(runtime.all("CMD")[0]) == ["serve", "--listen", "0.0.0.0:8080"]
    # no setting of its own: an image's ENV would beat the ConfigMap's file (tests/deploy/test_kubernetes_settings.py)
    settings_env = [name for name in runtime.env() if setting_path(name) is not None]
    assert not settings_env, f"the image sets {settings_env}; keyorch's defaults live in keyorch.settings only"
    # ... and keyorch's default database, relative to the WORKDIR, is on the volume
    assert Settings().database_url == "sqlite:///keyorch.db"
    assert runtime.all("WORKDIR") == runtime.all("VOLUME") == ["/var/lib/keyorch"]
    (health,) = runtime.all("HEALTHCHECK")
    assert "CMD [" in health and "/healthz" in health and "curl" not in health


class Rewriter:
    """Absolute paths the image uses → the same paths under a stage's directory."""

    def __init__(self, stages: list[Stage], roots: dict[str, Path]) -> None:
        paths: set[str] = set()
        for stage in stages:
            paths.update(stage.all("WORKDIR"))
            for copy in stage.all("COPY"):
                paths.update(w for w in copy.split() if w.startswith("/"))
            for run in stage.all("RUN"):
                paths.update(re.findall(r"-m venv (/\S+)", run))
        self.paths = sorted(paths, key=len, reverse=True)
        self.roots = roots

    def __call__(self, text: str, stage: str) -> str:
        for path in self.paths:
            text = re.sub(rf"(?<![\w/]){re.escape(path)}(?![\w.-])", str(self.roots[stage]) + path, text)
        return text


def copy_into(origin: Path, target: Path) -> None:
    """COPY of one source: a directory's contents into target, a file into the target directory."""
    if origin.is_dir():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target / origin.name)


@pytest.fixture(scope="module")
def image(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """Run every stage; give the runtime stage's directory and its environment."""
    tmp = tmp_path_factory.mktemp("image")
    base_python = tmp / "base-python"  # what python:3.11-slim gives: a plain Python with pip
    subprocess.run([sys.executable, "-m", "venv", str(base_python)], check=True, timeout=300)
    names = [stage.name or f"stage{i}" for i, stage in enumerate(stages)]
    roots = {name: tmp / name for name in names}
    rewrite = Rewriter(stages, roots)
    env: dict[str, str] = {}
    for name, stage in zip(names, stages, strict=True):
        root = roots[name]
        root.mkdir()
        cwd = root
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYORCH_", "VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = f"{base_python / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        for instruction, arg in stage.steps:
            if instruction == "ENV":
                for key, value in stage.env().items():
                    env[key] = rewrite(value.replace("$PATH", env["PATH"]), name)
            elif instruction == "WORKDIR":
                cwd = Path(rewrite(arg, name))
                cwd.mkdir(parents=True, exist_ok=True)
            elif instruction == "COPY":
                words = arg.split()
                source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
                *sources, dest = [w for w in words if not w.startswith("--")]
                target = Path(rewrite(dest, name)) if dest.startswith("/") else cwd / dest
                for source in sources:
                    copy_into(Path(rewrite(source, source_stage)) if source_stage else ROOT / source, target)
            elif instruction == "RUN":
                for command in (c.strip() for c in arg.split("&&")):
                    if command.split()[0] in NOT_RUN_HERE:
                        subprocess.run(["bash", "-n", "-c", command], check=True)
                        continue
                    proc = subprocess.run(
                        ["bash", "-euo", "pipefail", "-c", rewrite(command, name)],
                        cwd=cwd,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=900,
                        check=False,
                    )
                    assert proc.returncode == 0, f"RUN {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    yield roots[names[-1]], env


@pytest.mark.slow
def test_the_run_steps_build_a_wheel_and_install_keyorch(
    image: tuple[Path, dict[str, str]], stages: list[Stage]
) -> None:
    root, env = image
    assert not (root / "wheels").exists(), "the runtime stage removes the wheels it installed"
    venv = root / "opt" / "keyorch"
    assert (venv / "bin" / "keyorch").is_file()
    entrypoint = exec_form(stages[-1].all("ENTRYPOINT")[0])
    run = subprocess.run([*entrypoint, "--help"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert shutil.which(entrypoint[0], path=env["PATH"]) == str(venv / "bin" / "keyorch")
    assert "keystore" in run.stdout and "audit" in run.stdout
    cmd = exec_form(stages[-1].all("CMD")[0])
    if cmd[0] in run.stdout:  # the image's default command exists and takes its options
        serve = subprocess.run(
            [*entrypoint, *cmd, "--help"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert serve.returncode == 0 and "--listen" in serve.stdout, serve.stderr
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import keyorch, sys; print(keyorch.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert str(venv) in installed.stdout, "keyorch runs from the installed wheel, not the source tree"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.slow
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_the_healthcheck_command(
    image: tuple[Path, dict[str, str]], stages: list[Stage], status: int | None, healthy: bool
) -> None:
    root, env = image
    (health,) = stages[-1].all("HEALTHCHECK")
    command = exec_form(health.split("CMD", 1)[1].strip())
    assert command[0] == "python" and ":8080/healthz" in command[-1]
    handler = type("Handler", (_Health,), {"status": status or 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    if status is None:
        server.server_close()  # nothing listens on the port any more
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = [
            str(root / "opt" / "keyorch" / "bin" / "python"),
            *command[1:-1],
            command[-1].replace("8080", str(port)),
        ]
        proc = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    assert (proc.returncode == 0) is healthy, proc.stderr
