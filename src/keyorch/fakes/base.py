"""What every fake provider shares: the service base class, the request log, the
fault-serving middleware and the ``/_fake/`` admin routes.

A provider fake subclasses :class:`ProviderFake` and implements its wire protocol in
``add_routes``; :func:`build_app` wraps it with fault injection, error shaping and admin
routes. Handlers never see a fault: the middleware serves it before (or, for a truncated
body, after) the real handler runs.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from keyorch.fakes.clock import FakeClock
from keyorch.fakes.faults import Fault, FaultInjector, ProviderFaults
from keyorch.fakes.seed import SeedError, SeedKey, parse_keys
from keyorch.fakes.tokens import TokenIssuer

ADMIN_PREFIX = "/_fake/"
MAX_BODY_BYTES = 256 * 1024
REQUEST_LOG_LIMIT = 50_000

FAKE_KEY: web.AppKey[ProviderFake] = web.AppKey("fake")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeError(Exception):
    """Raised by a handler to answer with the provider's own error form."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class RequestLogEntry:
    time: datetime
    method: str
    path: str
    operation: str
    status: int | None = None
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "method": self.method,
            "path": self.path,
            "operation": self.operation,
            "status": self.status,
            "fault": self.fault,
        }


@dataclass
class RequestLog:
    entries: list[RequestLogEntry] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    fault_counts: Counter[str] = field(default_factory=Counter)

    def add(self, entry: RequestLogEntry) -> None:
        self.counts[entry.operation] += 1
        self.entries.append(entry)
        if len(self.entries) > REQUEST_LOG_LIMIT:
            del self.entries[: len(self.entries) - REQUEST_LOG_LIMIT]

    def clear(self) -> None:
        self.entries.clear()
        self.counts.clear()
        self.fault_counts.clear()

    def as_json(self, include_entries: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "total": sum(self.counts.values()),
            "by_operation": dict(sorted(self.counts.items())),
            "faults": dict(sorted(self.fault_counts.items())),
        }
        if include_entries:
            doc["entries"] = [e.as_json() for e in self.entries]
        return doc


class ProviderFake(ABC):
    """One fake provider service. Subclasses hold the provider's state and routes."""

    #: keystore type this fake imitates: aws_kms | azure_key_vault | google_kms | ibm_key_protect
    kind: str = ""

    def __init__(self, clock: FakeClock | None = None, faults: ProviderFaults | None = None) -> None:
        self.clock = clock or FakeClock()
        self.faults = FaultInjector(self.kind, faults or ProviderFaults())
        self.log = RequestLog()
        self.tokens = TokenIssuer(self.clock)

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the provider's wire-protocol routes."""

    @abstractmethod
    def operation_for(self, request: web.Request) -> str:
        """Name the operation a request asks for (without reading the body).

        Used for the request log and for matching fault rules; return ``"unknown"`` when
        the request matches nothing.
        """

    @abstractmethod
    def error_response(self, status: int, code: str, message: str) -> web.Response:
        """The provider's own error form."""

    def throttle_response(self, retry_after_seconds: float) -> web.Response:
        """Throttling in the provider's own form; AWS overrides (400 ThrottlingException)."""
        response = self.error_response(429, "TooManyRequests", "Rate limit exceeded; retry later.")
        response.headers["Retry-After"] = str(max(1, round(retry_after_seconds)))
        return response

    def credentials(self, base_url: str) -> dict[str, Any]:
        """The credentials document a client uses against this fake (``GET /_fake/credentials``).

        It is what ``keyorch keystore connect --credentials-file`` reads for this keystore type,
        with token endpoints pointing at ``base_url``. AWS: access key pair; Azure: tenant,
        client id and secret, authority host; Google: a service-account JSON; IBM: an API key
        and the IAM URL.
        """
        return {}

    @abstractmethod
    def state_snapshot(self) -> dict[str, Any]:
        """A JSON-able dump of every key as the provider holds it (for tests and demos)."""

    def reset(self) -> None:
        """Forget all keys (admin route). Subclasses extend."""
        self.log.clear()

    def seed(self, keys: Sequence[SeedKey], prefix: str = "keys") -> list[dict[str, Any]]:
        """Hold ``keys`` as if made outside keyorch (``POST /_fake/seed``, ``fakes serve --seed``): each fake makes
        them in its own store (:mod:`keyorch.fakes.seed_apply`) and answers each one's id and name. A seed it
        cannot hold raises :class:`~keyorch.fakes.seed.SeedError` and changes nothing."""
        raise SeedError(f"the {self.kind or 'this'} fake holds no seeded keys")


def _fault_label(fault: Fault) -> str:
    return fault.kind


async def _serve_truncated(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    body = response.body if isinstance(response, web.Response) else None
    raw = body if isinstance(body, bytes) else b'{"truncated": true, "padding": "xxxxxxxxxxxxxxxx"}'
    cut = web.StreamResponse(status=response.status, headers=response.headers)
    cut.content_length = len(raw)
    await cut.prepare(request)
    await cut.write(raw[: max(1, len(raw) // 2)])
    if request.transport is not None:
        request.transport.close()
    return cut


def _drop(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    # Nothing reaches the client; aiohttp discards this once the transport is gone.
    raise asyncio.CancelledError


def build_app(fake: ProviderFake) -> web.Application:
    """Wrap a provider fake with error shaping, fault injection, the request log and admin routes."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        try:
            operation = fake.operation_for(request)
        except Exception:  # a hostile request must never break the fake
            operation = "unknown"
        entry = RequestLogEntry(fake.clock.now(), request.method, request.path, operation)
        fake.log.add(entry)
        fault = fake.faults.next_fault(operation)
        if fault is not None:
            entry.fault = _fault_label(fault)
            fake.log.fault_counts[fault.kind] += 1
            early = await _serve_fault_before(request, fake, fault)
            if early is not None:
                entry.status = early.status
                return early
        response = await _run_handler(request, handler, fake)
        entry.status = response.status
        if fault is not None and fault.kind == "truncate":
            return await _serve_truncated(request, response)
        if fault is not None and fault.kind == "hold_after":  # applied; the answer comes hang_seconds later
            await asyncio.sleep(fault.hang_seconds)
            return response
        if fault is not None and fault.kind == "error_500_after":  # applied, but the answer says it failed
            # the log keeps the handler's status, as for truncate: ``fault`` says what was served instead
            return fake.error_response(500, "InternalError", "Injected internal error after the request was applied.")
        return response

    app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_BYTES)
    app[FAKE_KEY] = fake
    _add_admin_routes(app, fake)
    fake.add_routes(app)
    return app


async def _serve_fault_before(request: web.Request, fake: ProviderFake, fault: Fault) -> web.StreamResponse | None:
    kind = fault.kind
    if kind == "error_500":
        return fake.error_response(500, "InternalError", "Injected internal error.")
    if kind == "error_503":
        return fake.error_response(503, "ServiceUnavailable", "Injected service unavailable.")
    if kind == "throttle":
        return fake.throttle_response(fault.retry_after_seconds)
    if kind == "latency":
        await asyncio.sleep(fault.delay_ms / 1000)
        return None
    if kind == "hang":
        await asyncio.sleep(fault.hang_seconds)
        return fake.error_response(504, "GatewayTimeout", "Injected hang ended.")
    if kind == "drop":
        return _drop(request)
    if kind == "non_json":
        return web.Response(
            status=fault.status,
            text="<html><head><title>Bad Gateway</title></head><body>upstream error</body></html>",
            content_type="text/html",
        )
    return None  # truncate, error_500_after and hold_after act after the handler


async def _run_handler(request: web.Request, handler: Handler, fake: ProviderFake) -> web.StreamResponse:
    try:
        return await handler(request)
    except FakeError as exc:
        response = fake.error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    except web.HTTPRequestEntityTooLarge:
        return fake.error_response(413, "RequestEntityTooLarge", "The request body is too large.")
    except web.HTTPMethodNotAllowed as exc:
        return fake.error_response(405, "MethodNotAllowed", f"Method {exc.method} is not allowed here.")
    except web.HTTPNotFound:
        return fake.error_response(404, "NotFound", f"No route for {request.method} {request.path}.")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return fake.error_response(exc.status, exc.reason.replace(" ", ""), exc.reason)
        raise
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return fake.error_response(400, "BadRequest", "The request could not be understood.")
    except Exception:
        return fake.error_response(500, "InternalError", "The fake service failed on this request.")


async def read_json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """Read a JSON object body; raise a 400 FakeError for anything else. Handlers use this."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise FakeError(400, "BadRequest", "A JSON request body is required.")
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FakeError(400, "BadRequest", "The request body is not valid JSON.") from exc
    if not isinstance(doc, dict):
        raise FakeError(400, "BadRequest", "The request body must be a JSON object.")
    return doc


def _add_admin_routes(app: web.Application, fake: ProviderFake) -> None:
    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(fake.faults.describe())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read() or b"{}")
            fake.faults.configure(ProviderFaults.model_validate(doc))
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)[:2000]}, status=400)
        return web.json_response(fake.faults.describe())

    async def delete_faults(_: web.Request) -> web.Response:
        fake.faults.configure(ProviderFaults())
        return web.json_response(fake.faults.describe())

    async def get_requests(request: web.Request) -> web.Response:
        include = request.query.get("entries", "true").lower() != "false"
        return web.json_response(fake.log.as_json(include_entries=include))

    async def delete_requests(_: web.Request) -> web.Response:
        fake.log.clear()
        return web.json_response({"total": 0})

    async def get_clock(_: web.Request) -> web.Response:
        return web.json_response({"now": fake.clock.now().isoformat(), "offset_seconds": fake.clock.offset_seconds})

    async def post_clock(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read() or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("body must be an object")
            if "advance_seconds" in doc:
                fake.clock.advance(float(doc["advance_seconds"]))
            elif "set" in doc:
                fake.clock.set(datetime.fromisoformat(str(doc["set"])))
            else:
                raise ValueError("give 'advance_seconds' (number) or 'set' (ISO 8601 time with zone)")
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        return await get_clock(request)

    async def get_state(_: web.Request) -> web.Response:
        return web.json_response(fake.state_snapshot())

    async def post_reset(_: web.Request) -> web.Response:
        fake.reset()
        fake.faults.configure(ProviderFaults())
        return web.json_response({"reset": True})

    async def post_seed(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read() or b"{}")
            made = fake.seed(parse_keys(doc))
        except (ValueError, RecursionError) as exc:  # SeedError, and a body that is not JSON
            text = str(exc) if isinstance(exc, SeedError) else 'the body must be JSON: {"keys": [...]}'
            return web.json_response({"error": text[:2000]}, status=400)
        return web.json_response({"keys": made}, status=201)

    async def get_credentials(request: web.Request) -> web.Response:
        return web.json_response(fake.credentials(f"{request.scheme}://{request.host}"))

    async def delete_tokens(_: web.Request) -> web.Response:
        return web.json_response({"revoked": fake.tokens.revoke_all()})

    app.router.add_get("/_fake/credentials", get_credentials)
    app.router.add_delete("/_fake/tokens", delete_tokens)
    app.router.add_get("/_fake/faults", get_faults)
    app.router.add_put("/_fake/faults", put_faults)
    app.router.add_delete("/_fake/faults", delete_faults)
    app.router.add_get("/_fake/requests", get_requests)
    app.router.add_delete("/_fake/requests", delete_requests)
    app.router.add_get("/_fake/clock", get_clock)
    app.router.add_post("/_fake/clock", post_clock)
    app.router.add_get("/_fake/state", get_state)
    app.router.add_post("/_fake/reset", post_reset)
    app.router.add_post("/_fake/seed", post_seed)


@dataclass
class RunningFake:
    fake: ProviderFake
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_fake(
    fake: ProviderFake,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> RunningFake:
    """Start a fake on a real socket inside the running loop (port 0 picks a free port)."""
    runner = web.AppRunner(build_app(fake), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_port = int(address[1])
            break
    scheme = "https" if ssl_context is not None else "http"
    shown_host = f"[{host}]" if ":" in host else host
    return RunningFake(fake, runner, f"{scheme}://{shown_host}:{bound_port}")
