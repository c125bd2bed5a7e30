"""A keystore that answers like a hostile or broken server: a tiny ``aiohttp.web`` handler on a real
loopback socket, spoken to as an AWS KMS endpoint (keyorch signs its requests; nothing checks them).

* ``trickle``: every request gets a 200 whose announced 10,000-byte body comes one byte per
  ``TRICKLE_EVERY_SECONDS`` (well within the transport's 30 s read timeout per byte), forever;
* ``nested``: every request gets a 200 whose body is JSON nested 100,000 levels deep.

Each request's arrival is counted, so a test can tell the keystore was really asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.loopback import serve, trickle

from keyorch.fakes.registry import write_private_json

Mode = Literal["trickle", "nested"]
TRICKLE_EVERY_SECONDS = 0.5
NESTED = b"[" * 100_000 + b"]" * 100_000
CONTENT_TYPE = "application/x-amz-json-1.1"
CREDENTIALS = {"access_key_id": "AKIDHOSTILEKEYSTORE1", "secret_access_key": "hostile-secret-key-0123456789"}


@dataclass
class HostileKeystore:
    mode: Mode
    requests: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        if self.mode == "nested":
            return web.Response(status=200, body=NESTED, content_type=CONTENT_TYPE)
        return await trickle(request, self.stop, every=TRICKLE_EVERY_SECONDS, content_type=CONTENT_TYPE)

    async def start(self) -> HostileKeystore:
        self.server = await serve(self.handle)
        return self

    async def close(self) -> None:
        self.stop.set()
        if self.server is not None:
            await self.server.close()

    def connect_args(self, credentials: Path) -> list[str]:
        """``keyorch keystore connect`` options for it (the credentials are written to ``credentials``)."""
        write_private_json(credentials, CREDENTIALS)
        return [
            "--type",
            "aws_kms",
            "--endpoint",
            self.url,
            "--region",
            "us-east-1",
            "--credentials-file",
            str(credentials),
            "--allow-insecure-http",
            "--no-provider-quotas",
            "--rate-per-second",
            "0",
        ]
