"""Acumatica sandbox: the contract-based REST API (cookie session, ``GET /entity``, the Default endpoint's
Shipment entity with its package rows, file attachments), faithful to the facts in
``docs/vendors/erp-and-shipstation.md`` section 2.

One module per concern: :mod:`.auth` (``/entity/auth/login`` and ``logout`` with the licence's session limit:
a third concurrent session is refused, as on a trial licence; ``GET /entity``), :mod:`.entity` (the Shipment
entity: ``$filter``/``$expand``/``$top``/``$skip``/``$custom``, the ``{"value": ...}`` wrapping, ``PUT`` with
package rows matched by ``id``, files), :mod:`.control` (``/_sandbox/acumatica/sessions``, ``shipments``,
``touch``), :mod:`.state` (knobs, counters, sessions, records), ``seed.json`` (US residential and commercial,
multi-package, one Canadian, and broken ones: no postcode, unknown Ship Via, no weight, a 40-character sales
order number, a PO box with Ground; plus one on hold, one confirmed and one 3 days old).

Credentials: :data:`~ml_connector_sandbox.credentials.ACUMATICA_USERNAME` /
:data:`~ml_connector_sandbox.credentials.ACUMATICA_PASSWORD`, tenant
:data:`~ml_connector_sandbox.credentials.ACUMATICA_TENANT`. 429 bursts come from the common ``burst_429`` knob.
"""

from __future__ import annotations

from ml_connector_sandbox.acumatica.app import create_app
from ml_connector_sandbox.acumatica.state import SEED_PATH, AcumaticaState

__all__ = ["SEED_PATH", "AcumaticaState", "create_app"]
