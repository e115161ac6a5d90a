"""Run the sandbox in a subprocess for tests and talk to its control endpoints.

Example::

    with SandboxServer(["ups"]) as sandbox:
        base = sandbox.url("ups")              # "http://127.0.0.1:PORT"
        sandbox.set_knobs("ups", burst_429=2)
        ...
        assert sandbox.counters("ups")["labels_created"] == 1
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

import ml_connector_sandbox as sandbox_package

#: The folder that holds the ``ml_connector_sandbox`` package (``sandbox/``), for the child's PYTHONPATH.
_PACKAGE_ROOT = Path(sandbox_package.__file__).resolve().parents[1]


class SandboxServer:
    """``python -m ml_connector_sandbox`` as a context manager: start, wait until it answers, stop by PID.

    :param vendors: vendors to serve (default ``["ups"]``).
    :param host: loopback interface.
    :param startup_timeout: seconds to wait for the port file and the first answer.
    :param stop_timeout: seconds between SIGTERM and SIGKILL on stop.
    """

    def __init__(self, vendors: Sequence[str] = ("ups",), *, host: str = "127.0.0.1",
                 startup_timeout: float = 30.0, stop_timeout: float = 5.0) -> None:
        self.vendors = list(vendors)
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.urls: dict[str, str] = {}
        self._workdir: Path | None = None
        self._log = None
        self._session = requests.Session()

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """PID of the sandbox process while it runs."""
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path | None:
        """Where the sandbox's stdout and stderr go (read it when a test fails)."""
        return self._workdir / "sandbox.log" if self._workdir else None

    def start(self) -> SandboxServer:
        """Start the subprocess and wait until every vendor answers its control endpoint."""
        if self.process is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="ml-connector-sandbox-"))
        port_file = self._workdir / "ports.json"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "ml_connector_sandbox", "--vendors", ",".join(self.vendors),
                   "--host", self.host, "--port-file", str(port_file)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            self.urls = self._wait_for_port_file(port_file)
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _fail(self, reason: str) -> RuntimeError:
        """An error that carries the tail of the sandbox log."""
        tail = ""
        if self.log_path and self.log_path.exists():
            tail = self.log_path.read_text(errors="replace")[-3000:]
        return RuntimeError(f"sandbox {reason}; command log:\n{tail}")

    def _wait_for_port_file(self, port_file: Path) -> dict[str, str]:
        """Poll for the port file the sandbox writes (atomically) once every server listens."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._fail(f"exited with code {self.process.returncode} during startup")
            if port_file.exists():
                return json.loads(port_file.read_text(encoding="utf-8"))
            time.sleep(0.05)
        raise self._fail(f"wrote no port file within {self.startup_timeout} s")

    def _wait_until_answering(self) -> None:
        """Poll each vendor's counters endpoint until it answers 200."""
        deadline = time.monotonic() + self.startup_timeout
        for vendor in self.vendors:
            while True:
                try:
                    if self._session.get(self._control_url(vendor, "counters"), timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise self._fail(f"{vendor} did not answer")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the sandbox by PID, SIGKILL it if it has not exited after ``stop_timeout``."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        self._session.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- control API --------------------------------------------------------------------------------
    def url(self, vendor: str) -> str:
        """Base URL of a vendor, e.g. ``http://127.0.0.1:40165`` (the value for a connection's host)."""
        try:
            return self.urls[vendor]
        except KeyError:
            raise KeyError(f"vendor {vendor!r} is not served; served: {', '.join(self.urls)}") from None

    def _control_url(self, vendor: str, name: str) -> str:
        """URL of a control endpoint."""
        return f"{self.url(vendor)}/_sandbox/{name}"

    def control(self, vendor: str, method: str, name: str, payload: Any = None) -> Any:
        """Call any control endpoint (e.g. ``("ups", "POST", "ups/advance", {...})``); return its JSON.

        :raises requests.HTTPError: the control endpoint refused (its JSON says why).
        """
        response = self._session.request(method, self._control_url(vendor, name), json=payload, timeout=10)
        if response.status_code >= 400:
            raise requests.HTTPError(f"{method} /_sandbox/{name}: {response.status_code} {response.text}",
                                     response=response)
        return response.json()

    def counters(self, vendor: str) -> dict[str, Any]:
        """All counters of a vendor."""
        return self.control(vendor, "GET", "counters")

    def knobs(self, vendor: str) -> dict[str, Any]:
        """All knobs of a vendor."""
        return self.control(vendor, "GET", "knobs")

    def set_knobs(self, vendor: str, **knobs: Any) -> dict[str, Any]:
        """Merge knobs (unknown names are refused); return all knobs."""
        return self.control(vendor, "POST", "knobs", knobs)

    def reset(self, vendor: str) -> None:
        """Clear a vendor's data, counters, validation errors and knobs."""
        self.control(vendor, "POST", "reset")

    def validation_errors(self, vendor: str) -> list[dict[str, Any]]:
        """Requests the vendor refused: ``{"operation", "kind", "errors", "at"}``.

        ``kind`` is "request" for a spec (schema) violation, "rule" for a vendor business rule.
        """
        return self.control(vendor, "GET", "validation_errors")

    def advance_ups_package(self, tracking_number: str, status: str) -> dict[str, Any]:
        """UPS only: move a package to in_transit, out_for_delivery, delivered or exception."""
        return self.control("ups", "POST", "ups/advance", {"tracking_number": tracking_number, "status": status})
