"""What a client can hold of ``keyorch serve``'s API server, over real sockets: slow headers and slow bodies are
answered 408 and closed, requests past the cap get 503 with Retry-After, and a client that leaves mid-body is
logged as its own doing (info, no traceback).

Each test sets the bound it checks small, and asserts only on what the daemon answers (never on how long it
took); every loop that drips bytes or polls is bounded in count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.daemon.harness import ADMIN_TOKEN, DaemonProcess, eventually, write_config

DRIP_LINES = 100  # a drip gives up after this many lines: past any bound set here, under aiohttp's 128 headers
DRIP_PAUSE_SECONDS = 0.05


async def _daemon(tmp_path: Path, daemons: list[DaemonProcess], **api: Any) -> DaemonProcess:
    config = write_config(tmp_path / "keyorch.yaml", f"sqlite:///{tmp_path / 'keyorch.db'}", api=api)
    daemon = await DaemonProcess.start(tmp_path, config)
    daemons.append(daemon)
    return daemon


@asynccontextmanager
async def _socket(daemon: DaemonProcess) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    parts = urlsplit(daemon.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()


async def _drip(writer: asyncio.StreamWriter, line: bytes, answered: asyncio.Future[bytes]) -> int:
    """Send ``line`` again and again until the daemon has answered and closed; the lines sent."""
    sent = 0
    while not answered.done() and sent < DRIP_LINES:
        try:
            writer.write(line)
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        await asyncio.sleep(DRIP_PAUSE_SECONDS)
    return sent


def _post_head(path: str, length: int, token: str | None = ADMIN_TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: keyorch\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _status_and_body(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_headers_dripped_line_by_line_are_answered_408_and_closed(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """Twenty connections, no token, each dripping one more header line again and again: every one is answered
    408 and closed long before its drip runs out; a whole request still gets its answer."""
    daemon = await _daemon(tmp_path, daemons, header_timeout_seconds=0.5)

    async def one() -> tuple[bytes, int]:
        async with _socket(daemon) as (reader, writer):
            writer.write(b"GET /api/v4/vaults HTTP/1.1\r\nHost: keyorch\r\n")
            answered: asyncio.Future[bytes] = asyncio.ensure_future(reader.read())  # read() returns at EOF
            sent = await _drip(writer, b"X-Drip: 1\r\n", answered)
            return await asyncio.wait_for(answered, 30), sent

    results = await asyncio.gather(*(one() for _ in range(20)))
    for raw, sent in results:
        status, headers, body = _status_and_body(raw)
        assert status == 408, raw[:300]
        assert headers["connection"] == "close"
        assert json.loads(body)["errors"][0]["code"] == "request_timeout"
        assert sent < DRIP_LINES  # closed by the daemon, not by the drip giving up
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/healthz") as resp:
        assert resp.status == 200


async def test_a_body_dripped_byte_by_byte_is_answered_408_and_closed(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    daemon = await _daemon(tmp_path, daemons, body_timeout_seconds=0.5)
    async with _socket(daemon) as (reader, writer):
        writer.write(_post_head("/api/v4/vaults", 10_000) + b'{"name": "')
        answered: asyncio.Future[bytes] = asyncio.ensure_future(reader.read())
        sent = await _drip(writer, b"a", answered)
        raw = await asyncio.wait_for(answered, 30)
    status, headers, body = _status_and_body(raw)
    assert status == 408, raw[:300]
    assert headers["connection"] == "close"
    error = json.loads(body)["errors"][0]
    assert error["code"] == "request_timeout" and "api.body_timeout_seconds" in error["message"]
    assert sent < DRIP_LINES
    records = daemon.logs()
    assert any(r.get("event") == "api.body_timeout" for r in records)
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with session.get(daemon.url + "/api/v4/vaults", headers=headers) as resp:
            assert resp.status == 200 and (await resp.json())["total_count"] == 0  # nothing was created


async def test_requests_past_the_cap_get_503_with_retry_after(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """Two requests held in their handlers (bodies not sent yet) fill a cap of two: the next is refused at once
    with 503 and Retry-After, health and metrics still answer; once the two go away, requests are served again."""
    daemon = await _daemon(tmp_path, daemons, max_concurrent_requests=2, body_timeout_seconds=120)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as session:

        async def vaults() -> aiohttp.ClientResponse | None:
            async with session.get(daemon.url + "/api/v4/vaults", headers=headers) as resp:
                await resp.read()
                return resp

        async with _socket(daemon) as (_, first), _socket(daemon) as (_, second):
            for writer in (first, second):
                writer.write(_post_head("/api/v4/vaults", 100) + b'{"name": ')
                await writer.drain()

            async def refused() -> aiohttp.ClientResponse | None:
                resp = await vaults()
                return resp if resp is not None and resp.status == 503 else None

            resp = await eventually(refused, 30, "a request past the cap is refused", interval=0.05)
            assert int(resp.headers["Retry-After"]) >= 1
            async with session.get(daemon.url + "/api/v4/vaults", headers=headers) as again:
                doc = await again.json()
            assert again.status == 503 and doc["errors"][0]["code"] == "too_many_requests"
            assert "api.max_concurrent_requests" in doc["errors"][0]["message"]
            for probe in ("/healthz", "/metrics"):
                async with session.get(daemon.url + probe) as answer:
                    assert answer.status == 200, probe

        async def served() -> aiohttp.ClientResponse | None:
            resp = await vaults()
            return resp if resp is not None and resp.status == 200 else None

        await eventually(served, 30, "requests are served again once the held ones are gone", interval=0.05)


async def test_a_client_that_leaves_mid_body_is_logged_at_info_without_a_traceback(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    daemon = await _daemon(tmp_path, daemons)
    body = json.dumps({"name": "x" * 50, "dual_auth": False}).encode()
    for _ in range(5):
        async with _socket(daemon) as (_, writer):
            writer.write(_post_head("/api/v4/vaults", len(body)) + body[: len(body) // 2])
            await writer.drain()

    async def five_logged() -> list[dict[str, Any]] | None:
        found = [r for r in daemon.logs() if r.get("event") == "api.client_disconnected"]
        return found if len(found) == 5 else None

    records = await eventually(five_logged, 30, "five api.client_disconnected records")
    for record in records:
        assert record["level"] == "info" and record["path"] == "/api/v4/vaults"
        assert "exception" not in record and "Traceback" not in json.dumps(record)
    assert not [r for r in daemon.logs() if r.get("level") in ("error", "warning", "critical")]
    assert "Traceback" not in daemon.output


async def test_a_request_aiohttp_cannot_parse_gets_the_api_error_shape_and_no_traceback(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """A request line past aiohttp's 8190 bytes, and a header line that is not a header: 400 in the API's
    error document (the line is never echoed), logged at info in one line, and the next request served."""
    daemon = await _daemon(tmp_path, daemons)
    secretish = "tok" + "x" * 9000
    messages = []
    for request in (
        f"GET /api/v4/keystores?name={secretish} HTTP/1.1\r\nHost: keyorch\r\n\r\n".encode(),
        b"GET /api/v4/vaults HTTP/1.1\r\nHost: keyorch\r\nnot a header line\r\n\r\n",
    ):
        async with _socket(daemon) as (reader, writer):
            writer.write(request)
            raw = await asyncio.wait_for(reader.read(), 30)
        status, headers, body = _status_and_body(raw)
        assert status == 400, raw[:300]
        assert headers["content-type"].startswith("application/json") and headers["connection"] == "close"
        doc = json.loads(body)
        assert doc["status_code"] == 400 and doc["errors"][0]["code"] == "bad_request"
        assert secretish[:40] not in body.decode()
        messages.append(doc["errors"][0]["message"])
    assert "longer than 8190 bytes" in messages[0] and "not valid HTTP/1.1" in messages[1], messages
    records = [r for r in daemon.logs() if r.get("event") == "api.bad_http_request"]
    assert len(records) == 2 and all(r["level"] == "info" for r in records), records
    assert "Traceback" not in daemon.output and secretish[:40] not in daemon.output
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/healthz") as resp:
        assert resp.status == 200
