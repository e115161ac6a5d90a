"""A tiny loopback HTTP server for the hook tests: routes are Python functions, every request is recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    target: str  # as sent on the request line: a path, or an absolute URL when it came through a proxy
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict/list -> JSON, str -> text
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Answer]


class Loopback:
    """``http.server`` on a free loopback port, in a thread. ``route(method, path, fn)`` answers requests;
    unknown routes answer 404; ``requests`` lists everything received."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers.items()),
                                  self.rfile.read(length) if length else b"")
                loopback.requests.append(request)
                route = loopback.routes.get((self.command, request.path))
                answer = route(request) if route else Answer(404, {"error": "no route"})
                body = answer.body
                if isinstance(body, dict | list):
                    payload, content_type = json.dumps(body).encode(), "application/json"
                else:
                    payload, content_type = (body or "").encode(), "text/plain"
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (timeout tests)
                    self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def route(self, method: str, path: str, fn: Route) -> None:
        self.routes[(method, path)] = fn

    def seen(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
