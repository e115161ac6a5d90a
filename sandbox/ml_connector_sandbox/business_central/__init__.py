"""Business Central sandbox: Entra client-credentials tokens, API v2.0 and the ml-connector write-back page.

One app stands in for both hosts the hook talks to (the hook's ``authority`` extra points the token
request at it). One module per concern, each with its own router:

* :mod:`.entra` ``POST /{tenant}/oauth2/v2.0/token`` - Microsoft Entra client credentials, only for the
  sandbox app :data:`~ml_connector_sandbox.credentials.BUSINESS_CENTRAL_CLIENT_ID` /
  :data:`~ml_connector_sandbox.credentials.BUSINESS_CENTRAL_CLIENT_SECRET` (AADSTS700016 for another client
  id, AADSTS7000215 for another secret); also the bearer check of every API route.
* ``/v2.0/{tenant}/{environment}/api/v2.0/...`` - the standard API v2.0 (the tenant segment may be left
  out, as in BC): :mod:`.companies` (``companies``, ``companyInformation``, ``shipmentMethods``, ``items``)
  and :mod:`.sales_orders` (``salesOrders`` with ``$filter``, ``$expand=salesOrderLines,shipmentMethod``,
  ``$select``, ``$top``, ``$skip``, ``$count`` and server-driven paging, ``salesOrderLines``).
* :mod:`.writeback` ``/v2.0/{tenant}/{environment}/api/mlconnector/shipping/v1.0/companies({id})/salesOrderShipping``
  - the custom API page of ``ml_connector/erp/business_central/al`` (GET, PATCH with ``If-Match``).
* :mod:`.control` ``/_sandbox/business_central/touch`` and ``/_sandbox/business_central/orders``, besides
  the common control endpoints under ``/_sandbox/`` (:mod:`ml_connector_sandbox.common`).

Shared parts: :mod:`.odata` (formats, etags, ``$filter``, paging), :mod:`.errors` (BC's OData error shape
``{"error": {"code", "message"}}`` and Entra's token errors), :mod:`.state` (knobs, counters, tokens,
records), :mod:`.entities` (the JSON of the records), :mod:`.seed` (the company it serves, ``seed.json``).

Behaviour a client must cope with, as against BC:

* every collection is paged server-side (``page_size`` knob, default 2; ``Prefer: odata.maxpagesize``
  lowers it) with an absolute ``@odata.nextLink`` carrying a key-based ``$skiptoken``;
* ``status eq 'Open'`` means *Released*; BC-open orders are ``Draft``;
* the write-back page's ``@odata.etag`` is its own (GET it before PATCH; the salesOrders etag gives 412),
  and a successful PATCH also moves the order's ``lastModifiedDateTime``, so the next poll sees it again;
* ``If-Match: *`` is accepted as BC does (it skips the concurrency check and the ``etag_conflict_next``
  knob); the connector should not use it.
"""

from __future__ import annotations

from ml_connector_sandbox.business_central.app import create_app
from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.entra import SCOPE
from ml_connector_sandbox.business_central.odata import FilterField, parse_filter
from ml_connector_sandbox.business_central.sales_orders import SALES_ORDER_FILTER_FIELDS
from ml_connector_sandbox.business_central.seed import SEED_PATH
from ml_connector_sandbox.business_central.state import BusinessCentralState
from ml_connector_sandbox.business_central.writeback import WRITABLE_FIELDS, WRITEBACK_ROUTE

#: The old private name of :data:`WRITABLE_FIELDS` (tests/erp/business_central/test_mapping.py reads it).
_WRITABLE = WRITABLE_FIELDS

__all__ = [
    "SALES_ORDER_FILTER_FIELDS",
    "SCOPE",
    "SEED_PATH",
    "WRITABLE_FIELDS",
    "WRITEBACK_ROUTE",
    "BusinessCentralState",
    "EntityBuilder",
    "FilterField",
    "create_app",
    "parse_filter",
]
