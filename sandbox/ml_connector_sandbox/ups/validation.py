"""Request checks every UPS route shares: the vendored spec validators and the recorded 400 answers."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ml_connector_sandbox.specs.loader import SpecValidator, spec_validator
from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import ups_error, ups_error_from
from ml_connector_sandbox.ups.state import UpsState

#: The vendored specs the routes validate against (parsed when the app is built, not on the first request).
SPEC_FILES = ("OAuthClientCredentials.yaml", "AddressValidation.yaml", "Shipping.yaml", "Tracking.yaml",
              "UPSTrackAlert.yaml", "UPSTrackAlert-v1-aee93d6.yaml", "QuantumView.yaml")


def validator(filename: str) -> SpecValidator:
    """The cached validator of a vendored UPS spec."""
    return spec_validator("ups", filename)


def operation(request: Request) -> str:
    """``"POST /api/shipments/v2409/ship"``: how validation errors name the call."""
    return f"{request.method} {request.url.path}"


def reject_invalid(state: UpsState, request: Request, errors: list[str], code: str = codes.SCHEMA_INVALID) -> None:
    """Record spec violations and answer 400 naming the first one."""
    if errors:
        state.record_validation_error(operation(request), errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ups_error(400, code, f"Invalid request: {errors[0]}{more}")


async def json_body(state: UpsState, request: Request) -> Any:
    """The request body parsed as JSON, or a recorded 400."""
    try:
        return json.loads(await request.body())
    except ValueError:
        state.record_validation_error(operation(request), ["$: body is not valid JSON"])
        raise ups_error_from(400, codes.BODY_NOT_JSON) from None


def preload_specs() -> None:
    """Parse the big specs now (Shipping.yaml takes ~0.1 s), so the first request is not slower."""
    for filename in SPEC_FILES:
        validator(filename)
