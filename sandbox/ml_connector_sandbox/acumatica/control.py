"""Control endpoints of the Acumatica sandbox (besides the common ``/_sandbox/`` ones).

* ``GET /_sandbox/acumatica/sessions`` -> ``{"open": n}``: sessions logged in and not logged out or expired.
* ``GET /_sandbox/acumatica/shipments`` -> every shipment as plain values, package rows with ``TrackingNbr``,
  ``note``, ``custom`` and ``files`` as ``{filename: base64}``.
* ``POST /_sandbox/acumatica/touch`` ``{"number", "modified_at"}``: set ``LastModifiedDateTime``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ml_connector_sandbox.acumatica.state import AcumaticaState


def plain(shipment: dict[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in shipment.items() if k != "files"}
    for key in ("LastModifiedDateTime", "CreatedDateTime"):
        result[key] = shipment[key].isoformat()
    result["files"] = {name: base64.b64encode(content).decode() for name, content in shipment["files"].items()}
    return result


def router(state: AcumaticaState) -> APIRouter:
    api = APIRouter(prefix="/_sandbox/acumatica", tags=["sandbox control"])

    @api.get("/sessions")
    def sessions() -> dict[str, int]:
        return {"open": state.open_sessions()}

    @api.get("/shipments")
    def shipments() -> list[dict[str, Any]]:
        with state.lock:
            return [plain(s) for s in state.shipments.values()]

    @api.post("/touch")
    def touch(body: dict[str, Any]) -> JSONResponse:
        shipment = state.find(number=str(body.get("number")))
        if shipment is None:
            return JSONResponse({"error": f"no shipment {body.get('number')!r}"}, status_code=404)
        try:
            when = datetime.fromisoformat(str(body["modified_at"]))
        except (KeyError, ValueError):
            return JSONResponse({"error": "modified_at must be an ISO datetime with offset"}, status_code=400)
        with state.lock:
            state.touch(shipment, when)
            return JSONResponse({"ShipmentNbr": shipment["ShipmentNbr"],
                                 "LastModifiedDateTime": shipment["LastModifiedDateTime"].isoformat()})

    return api
