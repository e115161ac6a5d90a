"""The UPS sandbox: a spec-faithful fake of the UPS REST APIs the connector calls, served by FastAPI.

Routes (as on ``https://onlinetools.ups.com``; point the ``ups_default`` connection host here), one module
per concern, each with its own router:

- :mod:`.oauth` ``POST /security/v1/oauth/token``: client-credentials tokens (Basic auth, form body), only
  for the sandbox app :data:`~ml_connector_sandbox.credentials.UPS_CLIENT_ID` /
  :data:`~ml_connector_sandbox.credentials.UPS_CLIENT_SECRET`; anything else is UPS's 401 code 10401.
- :mod:`.address` ``POST /api/addressvalidation/{version}/{requestoption}``: XAV street level.
- :mod:`.shipping` ``POST /api/shipments/{version}/ship`` and ``DELETE /api/shipments/{version}/void/cancel/{id}``.
- :mod:`.tracking` ``GET /api/track/v1/details/{n}``, ``/api/track/v1/shipment/details/{n}``,
  ``/api/track/v1/reference/details/{ref}``.
- :mod:`.control` ``POST /_sandbox/ups/advance``, ``POST /_sandbox/ups/expire_tokens``,
  ``GET /_sandbox/ups/shipments``, besides the common ``/_sandbox/counters``, ``knobs``, ``reset`` and
  ``validation_errors`` (:mod:`ml_connector_sandbox.common`).

Request bodies are validated against the vendored specs (:mod:`.validation`); failures answer 400 and are
listed by ``GET /_sandbox/validation_errors`` (``kind`` "request"), as are Ship calls refused by a business
rule the schema cannot express (``kind`` "rule": reference placement, BillShipper account, service code).
State, knobs and counters: :mod:`.state`; error bodies and codes: :mod:`.errors`.
"""

from __future__ import annotations

from ml_connector_sandbox.ups.app import create_app

__all__ = ["create_app"]
