"""The fence before the wire (``keyorch.providers.fence``), against a raw TCP server on loopback that
records every byte it receives: past the moment the engine names, not one byte of a request leaves,
even when the process was paused between the last check in keyorch's code and aiohttp's write.

The pause is made where it matters: aiohttp buffers a request's headers and writes them with the
body from a task of its own, one turn of the event loop later. A test hook, placed just after
keyorch's own check, queues a blocking ``time.sleep`` ahead of that task, as a SIGSTOP there would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from keyorch.providers import fence
from keyorch.providers.errors import Fenced
from keyorch.providers.http import HttpTransport, TransportSettings
from keyorch.providers.limits import ProviderLimits
from keyorch.providers.retry import RetryPolicy

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


@dataclass
class Wire:
    """What reached the server: each chunk with the ``time.monotonic()`` it arrived at."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    url: str = ""

    @property
    def received(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    seen = Wire()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while b"\r\n\r\n" not in data or (b"POST" in data[:5] and not data.endswith(b"}")):
            chunk = await reader.read(65536)
            if not chunk:
                break
            seen.chunks.append((time.monotonic(), chunk))
            data += chunk
        writer.write(ANSWER)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen.url = f"http://127.0.0.1:{port}/keys"
    yield seen
    server.close()
    await server.wait_closed()


@pytest.fixture
async def transport() -> AsyncIterator[HttpTransport]:
    made = HttpTransport(
        "ks-fence",
        limits=ProviderLimits(rate_per_second=None, burst=1, max_concurrency=4),
        retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.05),
        settings=TransportSettings(allow_insecure_http=True),
    )
    yield made
    await made.aclose()


def pause_after_the_check(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[float]:
    """Every session the transport opens pauses the whole process for ``seconds`` on the loop turn
    after keyorch's header check, ahead of aiohttp's body writer. Returns when each pause ended."""
    ended: list[float] = []
    real = fence.trace_config

    def frozen() -> None:
        time.sleep(seconds)
        ended.append(time.monotonic())

    async def queue_pause(_s: aiohttp.ClientSession, _c: SimpleNamespace, _p: Any) -> None:
        asyncio.get_running_loop().call_soon(frozen)

    def with_pause() -> aiohttp.TraceConfig:
        config = real()
        config.on_request_headers_sent.append(queue_pause)
        return config

    monkeypatch.setattr(fence, "trace_config", with_pause)
    return ended


Call = Callable[[HttpTransport, str], Any]


def post(t: HttpTransport, url: str) -> Any:
    return t.request("POST", url, operation="DisableKey", idempotent=True, json={"KeyId": "k"})


def get(t: HttpTransport, url: str) -> Any:
    return t.request("GET", url, operation="GetKey", idempotent=True)


@pytest.mark.parametrize("call", [post, get], ids=["with a body", "without a body"])
async def test_past_the_moment_no_byte_of_the_request_leaves(wire: Wire, transport: HttpTransport, call: Call) -> None:
    with fence.send_by(time.monotonic() - 0.001), pytest.raises(Fenced) as refused:
        await call(transport, wire.url)
    assert refused.value.sent is False and refused.value.keystore == "ks-fence"
    assert "lease" in refused.value.message
    await asyncio.sleep(0.1)
    assert wire.received == b""


@pytest.mark.parametrize("call", [post, get], ids=["with a body", "without a body"])
async def test_before_the_moment_the_request_is_sent_as_usual(wire: Wire, transport: HttpTransport, call: Call) -> None:
    with fence.send_by(time.monotonic() + 30):
        result = await call(transport, wire.url)
    assert result.status == 200
    assert wire.received.startswith(call.__name__.upper().encode())


async def test_a_pause_between_the_check_and_the_write_past_the_moment_sends_nothing(
    wire: Wire, transport: HttpTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    ended = pause_after_the_check(monkeypatch, 0.3)
    with fence.send_by(time.monotonic() + 0.15), pytest.raises(Fenced):
        await post(transport, wire.url)
    assert len(ended) == 1  # the pause happened, across the moment
    await asyncio.sleep(0.1)
    assert wire.received == b""


async def test_the_injected_pause_sits_before_the_write(
    wire: Wire, transport: HttpTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with the moment still ahead, the bytes arrive only after the pause ended, so the
    pause above really is between keyorch's header check and aiohttp's write."""
    ended = pause_after_the_check(monkeypatch, 0.3)
    with fence.send_by(time.monotonic() + 30):
        result = await post(transport, wire.url)
    assert result.status == 200 and len(ended) == 1
    assert wire.chunks and wire.chunks[0][0] >= ended[0]
    assert b'{"KeyId": "k"}' in wire.received or b'{"KeyId":"k"}' in wire.received


async def test_outside_any_fence_nothing_is_held_back(wire: Wire, transport: HttpTransport) -> None:
    result = await post(transport, wire.url)
    assert result.status == 200 and wire.received.startswith(b"POST")
