"""`keyorch --server URL keystore connect --dry-run` and `keystore status` through a real daemon's API, against
the fakes: the dry run stores nothing, the status is the daemon's live check with the CLI's exit codes."""

from __future__ import annotations

from pathlib import Path

from keyorch.fakes.registry import connect_args
from tests.daemon.cli_server import served_world
from tests.uko.contract import validate_uko


async def test_status_and_dry_run_through_the_server(tmp_path: Path) -> None:
    async with served_world(tmp_path) as served:
        alice = served.remote("alice")
        await alice.ok("vault", "create", "main")
        aws = connect_args("aws_kms", served.cluster["aws_kms"], served.credentials["aws_kms"])
        connect = ("keystore", "connect", "--vault", "main", "--name", "aws", *aws)
        tried = await alice.ok(*connect, "--dry-run")
        assert (tried["dry_run"], tried["health_status"], "id" in tried) == (True, "ok", False)
        assert await alice.ok("keystore", "list") == []
        await alice.ok(*connect)
        status = await alice.ok("keystore", "status", "aws")
        validate_uko("KeystoreStatus", status)
        assert (status["health_status"], status["name"], status["status"]) == ("ok", "aws", "connected")
        reader = await served.remote("riley")("keystore", "status", "aws")  # a reader may look
        assert reader.code == 0 and reader.json()["health_status"] == "ok", reader
