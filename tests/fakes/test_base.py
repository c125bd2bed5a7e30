"""The shared fake machinery: fault serving, request log, clock and admin routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from keyorch.fakes.base import FakeError, ProviderFake, RunningFake, read_json_object, start_fake
from keyorch.fakes.faults import FaultInjector, FaultsFile, ProviderFaults


class EchoFake(ProviderFake):
    kind = "echo"

    def add_routes(self, app: web.Application) -> None:
        async def echo(request: web.Request) -> web.Response:
            doc = await read_json_object(request)
            if doc.get("fail"):
                raise FakeError(409, "Conflict", "asked to fail")
            return web.json_response({"echo": doc, "pad": "x" * 200})

        app.router.add_post("/echo", echo)

    def operation_for(self, request: web.Request) -> str:
        return "Echo" if request.path == "/echo" else "unknown"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    def state_snapshot(self) -> dict[str, Any]:
        return {"keys": []}


@pytest.fixture
async def echo() -> AsyncIterator[RunningFake]:
    running = await start_fake(EchoFake())
    yield running
    await running.stop()


async def test_sequence_served_in_order_then_clean(echo: RunningFake) -> None:
    echo.fake.faults.configure(
        ProviderFaults.model_validate(
            {"rules": [{"operation": "Echo", "sequence": ["error_503", "ok", "throttle", "non_json"]}]}
        )
    )
    statuses = []
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.post(echo.url + "/echo", json={"a": 1}) as r:
                statuses.append((r.status, r.headers.get("Retry-After"), r.content_type))
        async with s.get(echo.url + "/_fake/requests") as r:
            log = await r.json()
    assert [x[0] for x in statuses] == [503, 200, 429, 200, 200]
    assert statuses[2][1] == "1"
    assert statuses[3][2] == "text/html"
    assert log["by_operation"] == {"Echo": 5}
    assert log["faults"] == {"error_503": 1, "throttle": 1, "non_json": 1}


async def test_drop_and_truncate_reach_client_as_broken_responses(echo: RunningFake) -> None:
    echo.fake.faults.configure(
        ProviderFaults.model_validate({"rules": [{"operation": "*", "sequence": ["drop", "truncate"]}]})
    )
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.post(echo.url + "/echo", json={}) as r:
                await r.read()
        with pytest.raises(aiohttp.ClientError):
            async with s.post(echo.url + "/echo", json={}) as r:
                await r.json()
        async with s.post(echo.url + "/echo", json={"b": 2}) as r:
            assert (await r.json())["echo"] == {"b": 2}


async def test_hang_exceeds_client_timeout(echo: RunningFake) -> None:
    echo.fake.faults.configure(ProviderFaults.model_validate({"rules": [{"sequence": ["hang"]}]}))
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        with pytest.raises(TimeoutError):
            async with s.post(echo.url + "/echo", json={}) as r:
                await r.read()


async def test_hold_after_carries_the_request_out_then_holds_its_real_answer(echo: RunningFake) -> None:
    """The log shows the handler's status while the answer is still held; a held answer, once sent, is the
    real one; a client that gives up first never reads it."""
    rule = {"sequence": [{"kind": "hold_after", "hang_seconds": 3600}, {"kind": "hold_after", "hang_seconds": 0}]}
    echo.fake.faults.configure(ProviderFaults.model_validate({"rules": [rule]}))
    async with aiohttp.ClientSession() as s:

        async def post() -> Any:
            async with s.post(echo.url + "/echo", json={"a": 1}) as r:
                return await r.json()

        held = asyncio.create_task(post())
        for _ in range(500):
            if echo.fake.log.entries and echo.fake.log.entries[-1].status is not None:
                break
            await asyncio.sleep(0.01)
        [entry] = echo.fake.log.entries
        assert (entry.status, entry.fault) == (200, "hold_after")  # carried out, answer not sent
        assert not held.done()
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        assert (await post())["echo"] == {"a": 1}  # held 0 s: the real answer
    assert echo.fake.log.fault_counts["hold_after"] == 2


async def test_bad_input_gets_provider_error_form(echo: RunningFake) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(echo.url + "/echo", data=b"{not json") as r:
            assert r.status == 400 and (await r.json())["code"] == "BadRequest"
        async with s.get(echo.url + "/echo") as r:
            assert r.status == 405 and "code" in await r.json()
        async with s.get(echo.url + "/nowhere") as r:
            assert r.status == 404 and "code" in await r.json()
        async with s.post(echo.url + "/echo", data=b"[" * 300_000) as r:
            assert r.status == 413
        async with s.post(echo.url + "/echo", json={"fail": True}) as r:
            assert r.status == 409 and (await r.json())["message"] == "asked to fail"


async def test_clock_admin_route_advances(echo: RunningFake) -> None:
    before = echo.fake.clock.now()
    async with aiohttp.ClientSession() as s:
        async with s.post(echo.url + "/_fake/clock", json={"advance_seconds": 86400}) as r:
            assert r.status == 200
        async with s.post(echo.url + "/_fake/clock", json={"advance_seconds": "x"}) as r:
            assert r.status == 400
    assert (echo.fake.clock.now() - before).total_seconds() >= 86400


def test_seeded_rate_repeats() -> None:
    config = FaultsFile.model_validate(
        {"seed": 7, "providers": {"echo": [{"rate": 0.3, "faults": ["error_500", "throttle", "drop"]}]}}
    ).for_provider("echo")
    runs = []
    for _ in range(2):
        injector = FaultInjector("echo", config)
        runs.append([getattr(injector.next_fault("Echo"), "kind", None) for _ in range(200)])
    assert runs[0] == runs[1]
    hits = sum(1 for k in runs[0] if k is not None)
    assert 30 < hits < 90


def test_rule_needs_exactly_one_mode() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ProviderFaults.model_validate({"rules": [{"operation": "x"}]})
    with pytest.raises(ValueError):
        ProviderFaults.model_validate({"rules": [{"sequence": ["explode"]}]})
