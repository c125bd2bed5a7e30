"""`keyorch keystore connect --dry-run` and `keyorch keystore status` as subprocesses, against the AWS fake on
loopback: the dry run stores nothing, the status is UKO's KeystoreStatus with its exit code, a refused change of
credentials keeps the old ones."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.uko_keystore_bodies import running
from tests.e2e.harness import AsyncCli
from tests.uko.contract import validate_uko


async def test_dry_run_and_status_from_the_command_line(tmp_path: Path) -> None:
    cli = AsyncCli(tmp_path, extra_env={"KEYORCH_API__KEYSTORE_CHECK_TIMEOUT_SECONDS": "2"})
    async with running("aws_kms") as aws:
        good, bad = tmp_path / "aws.json", tmp_path / "wrong.json"
        creds = aws.fake.credentials(aws.url)
        good.write_text(json.dumps(creds), encoding="utf-8")
        bad.write_text(json.dumps({**creds, "secret_access_key": "W" * 40}), encoding="utf-8")
        assert (await cli("init")).code == 0
        await cli.ok("vault", "create", "main")
        where = ["--type", "aws_kms", "--region", "us-east-1", "--endpoint", aws.url, "--allow-insecure-http"]
        connect = ["keystore", "connect", "--vault", "main", "--name", "aws", *where]

        tried = await cli.ok(*connect, "--credentials-file", str(good), "--dry-run")
        assert (tried["dry_run"], tried["health_status"], "id" in tried) == (True, "ok", False)
        validate_uko("KeystoreStatus", tried)
        refused = await cli(*connect, "--credentials-file", str(bad), "--dry-run")
        assert refused.code == 2 and "connection test of keystore aws failed" in refused.err, refused
        assert "W" * 40 not in refused.out + refused.err
        assert await cli.ok("keystore", "list") == []
        assert aws.fake.log.counts["ListKeys"] == 2

        await cli.ok(*connect, "--credentials-file", str(good))
        status = await cli.ok("keystore", "status", "aws")
        validate_uko("KeystoreStatus", status)
        assert (status["health_status"], status["name"]) == ("ok", "aws")

        change = await cli("keystore", "update", "aws", "--credentials-file", str(bad))
        assert change.code == 2 and "connection test" in change.err, change
        assert (await cli.ok("keystore", "status", "aws"))["health_status"] == "ok"  # the old ones stay

        aws.fake.secret_access_key = "rotated-at-aws-" + "x" * 25
        stale = await cli("keystore", "status", "aws")
        assert stale.code == 2 and stale.json()["health_status"] == "configuration_error", stale
        await aws.stop()
        down = await cli("keystore", "status", "aws")
        assert down.code == 4 and down.json()["health_status"] == "not_responding", down
