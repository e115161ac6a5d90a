"""Serve several sandbox vendor apps in one process, each on its own loopback port.

One asyncio loop runs one ``uvicorn.Server`` per vendor (``asyncio.gather``). Each listening socket
is bound before uvicorn starts (port 0 = any free port, read back from the socket). Once every
server is listening, the URLs are written to ``--port-file`` as JSON
(``{"ups": "http://127.0.0.1:PORT", ...}``) by write-then-rename, so a reader never sees half a file.
SIGTERM and SIGINT stop every server gracefully; the port file is removed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn

from ml_connector_sandbox import VENDOR_APPS, available_vendors, load_app_factory

log = logging.getLogger("ml_connector_sandbox")

#: How long a server may take to start listening.
STARTUP_TIMEOUT_SECONDS = 30.0


class _SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve_vendors`.

    uvicorn's own handler would catch SIGTERM for the last server started only; here one handler
    stops them all.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not install uvicorn's signal handlers (uvicorn >= 0.29)."""
        yield

    def install_signal_handlers(self) -> None:
        """Do not install uvicorn's signal handlers (uvicorn < 0.29)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening-ready TCP socket; port 0 picks a free port (read it with ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response waits ~40 ms for Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_port_file(path: Path, urls: dict[str, str]) -> None:
    """Write the vendor URLs as JSON atomically (temp file in the same folder, then rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(urls, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


async def _wait_until_listening(servers: Sequence[uvicorn.Server], tasks: Sequence[asyncio.Task]) -> None:
    """Return once every server has started; raise if one of them stopped first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT_SECONDS
    while not all(server.started for server in servers):
        for task in tasks:
            if task.done():
                task.result()  # re-raises the startup error
                raise RuntimeError("a sandbox server stopped during startup")
        if loop.time() > deadline:
            raise TimeoutError(f"sandbox servers not listening after {STARTUP_TIMEOUT_SECONDS} s")
        await asyncio.sleep(0.01)


def _stop(servers: Sequence[uvicorn.Server]) -> None:
    """Ask every server to shut down gracefully."""
    for server in servers:
        server.should_exit = True


async def serve_vendors(vendors: Sequence[str], *, host: str = "127.0.0.1", ports: dict[str, int] | None = None,
                        port_file: Path | None = None, log_level: str = "warning") -> None:
    """Run the apps of ``vendors`` until SIGTERM/SIGINT.

    :param vendors: registered vendor names (see :data:`ml_connector_sandbox.VENDOR_APPS`).
    :param host: interface to bind (loopback by default: the sandbox has no authentication of its own).
    :param ports: fixed ports per vendor; others get a free port.
    :param port_file: where to write ``{"vendor": "http://host:port"}`` once all are listening.
    """
    ports = ports or {}
    sockets = {vendor: bind_socket(host, ports.get(vendor, 0)) for vendor in vendors}
    servers, tasks = [], []
    for vendor in vendors:
        config = uvicorn.Config(load_app_factory(vendor)(), lifespan="off", log_level=log_level,
                                access_log=False, timeout_graceful_shutdown=2)
        servers.append(_SharedLoopServer(config))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, servers)
    tasks = [asyncio.create_task(server.serve(sockets=[sockets[vendor]]))
             for vendor, server in zip(vendors, servers, strict=True)]
    try:
        await _wait_until_listening(servers, tasks)
        urls = {vendor: base_url(host, sockets[vendor].getsockname()[1]) for vendor in vendors}
        if port_file is not None:
            write_port_file(port_file, urls)
        for vendor, url in urls.items():
            print(f"sandbox {vendor}: {url}", flush=True)
        await asyncio.gather(*tasks)
    finally:
        _stop(servers)
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in sockets.values():
            sock.close()
        if port_file is not None:
            with contextlib.suppress(FileNotFoundError):
                port_file.unlink()


def _vendor_list(values: Sequence[str] | None) -> list[str]:
    """``--vendors ups business_central`` or ``--vendors ups,business_central``; default all importable."""
    if not values:
        return available_vendors()
    vendors = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [vendor for vendor in vendors if vendor not in VENDOR_APPS]
    if unknown:
        raise SystemExit(f"unknown vendor(s) {', '.join(unknown)}; registered: {', '.join(VENDOR_APPS)}")
    return vendors


def _port_map(values: Sequence[str] | None) -> dict[str, int]:
    """``--port ups=8101`` (repeatable) as a dict."""
    ports = {}
    for value in values or []:
        vendor, separator, port = value.partition("=")
        if not separator or not port.isdigit():
            raise SystemExit(f"--port expects VENDOR=PORT, got {value!r}")
        ports[vendor.strip()] = int(port)
    return ports


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m ml_connector_sandbox``."""
    parser = argparse.ArgumentParser(prog="python -m ml_connector_sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--vendors", nargs="*", help="vendors to serve (default: every registered vendor "
                        f"whose module imports); registered: {', '.join(VENDOR_APPS)}")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", action="append", metavar="VENDOR=PORT",
                        help="fixed port for a vendor, e.g. ups=8101 (default: a free port)")
    parser.add_argument("--port-file", type=Path, help="write the vendor URLs here as JSON once listening")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ml_connector_sandbox``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    vendors = _vendor_list(args.vendors)
    if not vendors:
        print("no sandbox vendor could be imported", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve_vendors(vendors, host=args.host, ports=_port_map(args.port),
                                  port_file=args.port_file, log_level=args.log_level))
    except OSError as exc:
        print(f"sandbox could not start: {exc}", file=sys.stderr)
        return 1
    return 0
