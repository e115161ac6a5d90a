"""UPS-only control endpoints under ``/_sandbox/ups/`` (no auth, never delayed or throttled).

- ``POST advance``: move a package to in_transit, out_for_delivery, delivered or exception;
- ``POST expire_tokens``: expire every issued token now;
- ``GET shipments``: the stored shipments and their packages.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.common import CONTROL_PREFIX
from ml_connector_sandbox.ups import track_alert
from ml_connector_sandbox.ups.state import UpsState
from ml_connector_sandbox.ups.tracking import ADVANCE_STATUSES, STAGES, advance, refresh, stage_index


def router(state: UpsState) -> APIRouter:
    """``/_sandbox/ups/...``: move tracking along, expire tokens, list stored shipments."""
    api = APIRouter(prefix=f"{CONTROL_PREFIX}/ups", tags=["sandbox control"])

    @api.post("/advance")
    async def advance_package(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"error": 'body must be {"tracking_number": "1Z...", "status": "..."}',
                                 "statuses": list(ADVANCE_STATUSES)}, status_code=400)
        number, status = str(payload.get("tracking_number", "")), payload.get("status", "")
        with state.lock:
            found = state.find_package(number)
            if found is None:
                return JSONResponse({"error": f"unknown tracking number {number!r}"}, status_code=404)
            shipment, package = found
            try:
                refresh(state, shipment, package)
                advance(package, status, state.now())
            except ValueError as exc:
                return JSONResponse({"error": str(exc), "statuses": list(ADVANCE_STATUSES)}, status_code=409)
            current = package.events[-1].code
            return JSONResponse({"tracking_number": package.tracking_number,
                                 "stage": STAGES[stage_index(package)], "current_code": current})

    @api.post("/expire_tokens")
    def expire_tokens() -> dict[str, Any]:
        state.set_knobs({"expire_all_tokens": True})
        return {"expired": True}

    @api.post("/emit")
    def emit_now() -> dict[str, Any]:
        """Run the Track Alert emitter once now (deterministic tests)."""
        return {"delivered": track_alert.emit(state)}

    @api.get("/subscriptions")
    def list_subscriptions() -> list[dict[str, Any]]:
        with state.lock:
            return [{"tracking_number": s.tracking_number, "style": s.style, "kind": s.kind,
                     "subscribed_at": s.subscribed_at.isoformat(), "expires_at": s.expires_at.isoformat(),
                     "url": s.url, "events_sent": len(s.sent)}
                    for s in track_alert.subscriptions(state).values()]

    @api.get("/shipments")
    def list_shipments() -> list[dict[str, Any]]:
        with state.lock:
            return [
                {"shipment_id": shipment.shipment_id, "service_code": shipment.service_code,
                 "shipper_number": shipment.shipper_number, "created_at": shipment.created_at.isoformat(),
                 "voided": shipment.voided, "references": shipment.references, "ship_to": shipment.ship_to,
                 "packages": [{"tracking_number": package.tracking_number, "references": package.references,
                               "voided": package.voided, "stage": STAGES[stage_index(package)]}
                              for package in shipment.packages]}
                for shipment in state.shipments.values()
            ]

    return api
