"""SYSPRO control endpoints under ``/_sandbox/syspro/`` (no auth, never delayed or throttled)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ml_connector_sandbox.syspro.state import SysproState


class Place(BaseModel):
    """Move documents' date column: ``entity_set`` (None: every table) and ``keys`` (None: every row)."""

    at: datetime
    entity_set: str | None = None
    keys: list[str] | None = None
    spacing_seconds: float = 0


def router(state: SysproState) -> APIRouter:
    api = APIRouter(prefix="/_sandbox/syspro", tags=["sandbox control"])

    @api.get("/sessions")
    def sessions() -> dict[str, Any]:
        return {"open": state.open_sessions()}

    @api.get("/issued_sessions")
    def issued_sessions() -> list[str]:
        with state.lock:
            return list(state.issued)

    @api.get("/custom_forms")
    def custom_forms() -> list[dict[str, str]]:
        with state.lock:
            return [{"form_type": f, "key": k, "field": n, "value": v}
                    for (f, k, n), v in sorted(state.custom_forms.items())]

    @api.get("/tables/{entity_set}")
    def rows(entity_set: str) -> JSONResponse:
        table = state.tables.get(entity_set)
        if table is None:
            return JSONResponse({"error": f"no table {entity_set}"}, status_code=404)
        with state.lock:
            return JSONResponse([{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
                                 for r in table["rows"]])

    @api.post("/place")
    def place(body: Place) -> dict[str, Any]:
        """Set the date column of documents to ``at`` (minus ``spacing_seconds`` per document)."""
        placed = []
        with state.lock:
            for name, table in state.tables.items():
                if body.entity_set not in (None, name):
                    continue
                for row in table["rows"]:
                    key = str(row[table["key"]])
                    if body.keys is not None and key not in body.keys:
                        continue
                    row[table["date"]] = body.at - timedelta(seconds=body.spacing_seconds * len(placed))
                    placed.append(f"{name}:{key}")
        return {"placed": placed}

    return api
