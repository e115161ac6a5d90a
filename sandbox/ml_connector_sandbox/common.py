"""Vendor-neutral sandbox parts: state with knobs and counters, control endpoints, fault middleware.

Every vendor app (``ups/``, ``business_central/`` ...) subclasses :class:`SandboxState`,
declares its knobs and counters, and calls :func:`install_sandbox` on its FastAPI app. That mounts
the control endpoints under ``/_sandbox/`` and the :class:`SandboxMiddleware`, which adds latency,
answers knob-driven 429 bursts and drops connections on request. Control endpoints are never
delayed or throttled.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

CONTROL_PREFIX = "/_sandbox"

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class VendorError(Exception):
    """An HTTP error answered with the vendor's own error body (raised by endpoints and dependencies).

    :param status_code: HTTP status.
    :param body: JSON body, already in the vendor's error shape.
    :param headers: extra response headers (e.g. ``Retry-After`` for vendors that send one).
    """

    def __init__(self, status_code: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {json.dumps(body)[:200]}")
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})

    def to_response(self) -> JSONResponse:
        """Render as a JSON response."""
        return JSONResponse(self.body, status_code=self.status_code, headers=self.headers)


class DropConnection(Exception):  # noqa: N818 - an instruction to the middleware, not an error
    """Raise from an endpoint to close the TCP connection without sending any HTTP response.

    Simulates a server that did the work (e.g. bought a label) and then died before answering:
    the client sees a dropped connection, never an HTTP status.
    """


class SandboxState:
    """Knobs, counters, recorded validation errors and vendor data of one sandbox app, behind one lock.

    The server is asyncio, but FastAPI runs sync endpoints in a thread pool, so every read-modify-write
    goes through :attr:`lock`. Subclasses extend :attr:`KNOB_DEFAULTS` / :attr:`COUNTER_DEFAULTS`
    and override :meth:`reset_vendor_data`, :meth:`is_api_path` and :meth:`rate_limit_error`.
    """

    #: Knobs every vendor has. Values are the defaults; their types are enforced on update.
    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        "latency_ms": 0,            # sleep before answering each API request
        "burst_429": 0,             # the next N API requests answer 429 with the vendor's error body
        "clock_offset_seconds": 0.0,  # move the sandbox clock forward (token expiry, tracking) without sleeping
    }
    #: Counters every vendor has; dict values are per-key counters.
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        "api_requests": 0,
        "rate_limited": 0,
        "connections_dropped": 0,
        "validation_errors": 0,
        "in_flight": 0,             # API requests being answered now
        "most_in_flight": 0,        # the most API requests answered at once (clients' concurrency, as the vendor sees it)
    }

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.knobs: dict[str, Any] = {}
        self.counters: dict[str, Any] = {}
        self.validation_errors: list[dict[str, Any]] = []
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear vendor data, counters, validation errors and knobs (back to defaults)."""
        with self.lock:
            self.knobs = copy.deepcopy(self.KNOB_DEFAULTS)
            self.counters = copy.deepcopy(self.COUNTER_DEFAULTS)
            self.validation_errors = []
            self.reset_vendor_data()

    def reset_vendor_data(self) -> None:
        """Hook: drop the vendor's stored objects (called under the lock)."""

    # -- knobs ------------------------------------------------------------------------------------
    def knob(self, name: str) -> Any:
        """Current value of a knob."""
        with self.lock:
            return self.knobs[name]

    def set_knobs(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into the knobs (type-checked against the defaults); return all knobs.

        :raises ValueError: unknown knob name or a value of the wrong type; the message lists the knobs.
        """
        coerced = {name: self._coerce_knob(name, value) for name, value in updates.items()}
        with self.lock:
            self.knobs.update(coerced)
            self.on_knobs_changed(coerced)
            return dict(self.knobs)

    def _coerce_knob(self, name: str, value: Any) -> Any:
        """Check a knob name and convert its value to the default's type."""
        if name not in self.KNOB_DEFAULTS:
            raise ValueError(f"unknown knob {name!r}; knobs are: {', '.join(sorted(self.KNOB_DEFAULTS))}")
        default = self.KNOB_DEFAULTS[name]
        expected = {bool: "true or false", int: "a whole number >= 0", float: "a number"}.get(
            type(default), type(default).__name__)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
                return value
            if isinstance(value, bool):  # bool is an int subclass: refuse it for numeric knobs
                raise TypeError
            if isinstance(default, int):
                if float(value) != int(float(value)) or int(float(value)) < 0:
                    raise TypeError
                return int(float(value))
            return type(default)(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"knob {name!r} expects {expected}, got {value!r}") from None

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        """Hook: react to knobs that are actions (called under the lock)."""

    def take_one(self, knob: str) -> bool:
        """Atomically consume one unit of a countdown knob (``burst_429``...); True if one was left."""
        with self.lock:
            if self.knobs.get(knob, 0) > 0:
                self.knobs[knob] -= 1
                return True
            return False

    # -- clock ------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The sandbox clock (UTC): real time plus the ``clock_offset_seconds`` knob."""
        return datetime.now(UTC) + timedelta(seconds=float(self.knobs.get("clock_offset_seconds", 0.0)))

    # -- counters and validation errors -----------------------------------------------------------
    def increment(self, counter: str, by: int = 1, *, key: str | None = None) -> None:
        """Add ``by`` to a counter, or to ``counter[key]`` for per-key counters."""
        with self.lock:
            if key is None:
                self.counters[counter] = self.counters.get(counter, 0) + by
            else:
                per_key = self.counters.setdefault(counter, {})
                per_key[key] = per_key.get(key, 0) + by

    def enter_request(self) -> None:
        """Count one API request being answered (``in_flight``) and keep the peak (``most_in_flight``)."""
        with self.lock:
            self.counters["in_flight"] = self.counters.get("in_flight", 0) + 1
            self.counters["most_in_flight"] = max(self.counters.get("most_in_flight", 0), self.counters["in_flight"])

    def counters_snapshot(self) -> dict[str, Any]:
        """A deep copy of the counters, safe to serialise."""
        with self.lock:
            return copy.deepcopy(self.counters)

    def record_validation_error(self, operation: str, errors: list[str], *, kind: str = "request") -> None:
        """Remember a request that failed spec validation (served by ``GET /_sandbox/validation_errors``)."""
        with self.lock:
            self.validation_errors.append({
                "operation": operation, "kind": kind, "errors": list(errors), "at": self.now().isoformat(),
            })
            self.counters["validation_errors"] = self.counters.get("validation_errors", 0) + 1

    # -- vendor policy hooks ----------------------------------------------------------------------
    def is_api_path(self, path: str) -> bool:
        """Whether ``path`` is a vendor API route (delayed/throttled); control routes never are."""
        return not path.startswith(CONTROL_PREFIX)

    def rate_limit_error(self) -> VendorError:
        """The 429 this vendor answers when throttled (override with the vendor's body and headers)."""
        return VendorError(429, {"error": "Too Many Requests"})


def control_router(state: SandboxState) -> APIRouter:
    """Build the ``/_sandbox`` control endpoints for one vendor app.

    ``GET counters``, ``GET validation_errors``, ``GET knobs``, ``POST knobs`` (merge, returns all
    knobs), ``POST reset`` (clears state, counters and knobs).
    """
    router = APIRouter(prefix=CONTROL_PREFIX, tags=["sandbox control"])

    @router.get("/counters")
    def get_counters() -> dict[str, Any]:
        return state.counters_snapshot()

    @router.get("/validation_errors")
    def get_validation_errors() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.validation_errors)

    @router.get("/knobs")
    def get_knobs() -> dict[str, Any]:
        with state.lock:
            return dict(state.knobs)

    @router.post("/knobs")
    async def post_knobs(request: Request) -> JSONResponse:
        try:
            updates = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be a JSON object of knob values"}, status_code=400)
        if not isinstance(updates, dict):
            return JSONResponse({"error": "body must be a JSON object of knob values"}, status_code=400)
        try:
            return JSONResponse(state.set_knobs(updates))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @router.post("/reset")
    def post_reset() -> dict[str, Any]:
        state.reset()
        return {"reset": True}

    return router


async def _send_json(send: Send, error: VendorError) -> None:
    """Send a complete JSON response from raw ASGI (used before the app runs)."""
    body = json.dumps(error.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def abort_connection(receive: Receive) -> bool:
    """Close the client's TCP connection at once, without a response; return False if impossible.

    uvicorn hands the app bound methods of its per-request cycle object, which holds the asyncio
    transport. ``transport.abort()`` closes the socket without flushing; the connection-lost
    callback then marks the cycle disconnected, so uvicorn does not try to send its own 500.
    """
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    transport.abort()
    for _ in range(50):  # connection_lost runs on a later loop iteration
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    return True


class SandboxMiddleware:
    """Raw ASGI middleware: latency and 429 bursts on API routes, and :class:`DropConnection` handling.

    Raw ASGI (not ``BaseHTTPMiddleware``) so that ``receive`` stays uvicorn's own bound method, which
    :func:`abort_connection` needs, and so that nothing is buffered.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.state.is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        self.state.increment("api_requests")
        self.state.enter_request()
        try:
            await self._answer(scope, receive, send)
        finally:
            self.state.increment("in_flight", -1)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        latency_ms = self.state.knob("latency_ms")
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if self.state.take_one("burst_429"):
            self.state.increment("rate_limited")
            await _send_json(send, self.state.rate_limit_error())
            return
        try:
            await self.app(scope, receive, send)
        except DropConnection:
            self.state.increment("connections_dropped")
            if not await abort_connection(receive):
                log.error("cannot drop the connection under this server; answering 500 instead")
                raise


def install_sandbox(app: FastAPI, state: SandboxState) -> FastAPI:
    """Mount the control endpoints, the fault middleware and the :class:`VendorError` handler."""
    app.state.sandbox = state
    app.include_router(control_router(state))
    app.add_middleware(SandboxMiddleware, state=state)

    @app.exception_handler(VendorError)
    async def vendor_error_handler(_request: Request, exc: VendorError) -> JSONResponse:
        return exc.to_response()

    return app
