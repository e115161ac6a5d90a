"""State of the SYSPRO sandbox: e.net sessions (idle expiry, licence seats), OData tables, custom form values."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from ml_connector_sandbox.common import SandboxState, VendorError

SEED_PATH = Path(__file__).with_name("seed.json")


@dataclass
class Session:
    """One logged-on e.net session (a licence seat until Logoff or idle expiry)."""

    operator: str
    last_used: datetime


class SysproState(SandboxState):
    """Knobs, counters, sessions and company data of the SYSPRO sandbox."""

    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.KNOB_DEFAULTS,
        "session_idle_seconds": 1200,   # e.net ends a session unused this long (sandbox clock)
        "licence_seats": 5,             # concurrent e.net sessions the licence allows
        "expire_all_sessions": False,   # action: end every session now (as an idle timeout would), then false
        "expire_sessions_after_calls": 0,  # the session expires after N more business-object calls (0: never)
        "call_latency_ms": 0,           # time a business-object call holds its session (exposes collisions)
        "page_size": 2,                 # OData server page size
        "malicious_answer_next": 0,     # next N business-object answers carry an entity declaration
    }
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.COUNTER_DEFAULTS,
        "logons": 0,
        "logon_errors": 0,
        "logoffs": 0,
        "licence_refusals": 0,
        "sessions_expired": 0,
        "expired_session_calls": 0,
        "session_collisions": 0,
        "business_object_calls": 0,
        "odata_pages_served": 0,
        "odata_auth_failures": 0,
    }

    def __init__(self, seed_path: Path = SEED_PATH) -> None:
        self.seed_path = seed_path
        super().__init__()

    def reset_vendor_data(self) -> None:
        seed = json.loads(self.seed_path.read_text(encoding="utf-8"))
        self.seed = seed
        self.company_id: str = seed["company_id"]
        self.company_password: str = seed["company_password"]
        self.odata_user: str = seed["odata_user"]
        self.odata_password: str = seed["odata_password"]
        now = self.now().replace(microsecond=0)
        self.tables: dict[str, dict[str, Any]] = {}
        for name, table in seed["tables"].items():
            rows = []
            for record in table["rows"]:
                row = {k: v for k, v in record.items() if k != "minutes_ago"}
                row[table["date"]] = now - timedelta(minutes=record["minutes_ago"])
                rows.append(row)
            self.tables[name] = {"key": table["key"], "date": table["date"], "rows": rows}
        self.sessions: dict[str, Session] = {}
        self.issued: list[str] = []  # every UserId handed out (tests check none leaks)
        self.busy: set[str] = set()
        self.calls_until_expiry: int | None = None
        self.custom_forms: dict[tuple[str, str, str], str] = {}
        self.busy_lock = threading.Lock()

    def on_knobs_changed(self, changed: dict[str, Any]) -> None:
        if changed.get("expire_all_sessions"):
            self.counters["sessions_expired"] += len(self.sessions)
            self.sessions.clear()
            self.knobs["expire_all_sessions"] = False
        if "expire_sessions_after_calls" in changed:
            n = self.knobs["expire_sessions_after_calls"]
            self.calls_until_expiry = n if n > 0 else None
        if "page_size" in changed and self.knobs["page_size"] < 1:
            self.knobs["page_size"] = 1

    def is_api_path(self, path: str) -> bool:
        return not path.startswith("/_sandbox")

    def rate_limit_error(self) -> VendorError:
        return VendorError(429, {"error": {"code": "429", "message": "Too many requests"}})

    # -- sessions ---------------------------------------------------------------------------------
    def _expire_idle(self) -> None:
        limit = timedelta(seconds=int(self.knobs["session_idle_seconds"]))
        now = self.now()
        for guid in [g for g, s in self.sessions.items() if now - s.last_used > limit]:
            del self.sessions[guid]
            self.counters["sessions_expired"] += 1

    def logon(self, operator: str) -> str | None:
        """A new session's UserId, or None when every licence seat is taken."""
        with self.lock:
            self._expire_idle()
            if len(self.sessions) >= int(self.knobs["licence_seats"]):
                self.counters["licence_refusals"] += 1
                return None
            guid = str(uuid.uuid4()).upper()
            self.sessions[guid] = Session(operator, self.now())
            self.issued.append(guid)
            self.counters["logons"] += 1
            return guid

    def logoff(self, guid: str) -> bool:
        with self.lock:
            if self.sessions.pop(guid, None) is None:
                return False
            self.counters["logoffs"] += 1
            return True

    def use_session(self, guid: str) -> bool:
        """Whether ``guid`` is a live session (touching it); the ``expire_sessions_after_calls`` knob ends it."""
        with self.lock:
            self._expire_idle()
            session = self.sessions.get(guid)
            if session is None:
                self.counters["expired_session_calls"] += 1
                return False
            if self.calls_until_expiry is not None:
                if self.calls_until_expiry == 0:
                    del self.sessions[guid]
                    self.counters["sessions_expired"] += 1
                    self.counters["expired_session_calls"] += 1
                    self.calls_until_expiry = None
                    self.knobs["expire_sessions_after_calls"] = 0
                    return False
                self.calls_until_expiry -= 1
            session.last_used = self.now()
            return True

    def open_sessions(self) -> int:
        with self.lock:
            self._expire_idle()
            return len(self.sessions)

    def find_row(self, entity_set: str, key: str) -> dict[str, Any] | None:
        table = self.tables.get(entity_set)
        if table is None:
            return None
        return next((r for r in table["rows"] if str(r[table["key"]]) == key), None)
