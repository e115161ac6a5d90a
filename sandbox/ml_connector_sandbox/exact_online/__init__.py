"""Exact Online sandbox: the OAuth server with a rotating refresh token, the division's REST API and its limits.

* ``POST /api/oauth2/token``: ``authorization_code`` (code from ``GET /api/oauth2/auth``) and ``refresh_token``
  grants for the sandbox app only (:data:`.state.CLIENT_ID` / :data:`.state.CLIENT_SECRET`; anything else 401
  ``invalid_client``). Every refresh answers a new refresh token and the old one is dead at once (400
  ``invalid_grant``); a refresh sooner than 570 s after the last one is refused with 400 ``access_denied``
  "Rate limit exceeded: access_token not expired" and ``Reason: TooEarlyToRefreshTokens``. Access tokens live
  600 s. After start or reset the valid refresh token is :data:`.state.INITIAL_REFRESH_TOKEN`.
* ``/api/v1/current/Me`` (no division) and ``/api/v1/{division}/...``: goods deliveries (``$filter`` on
  ``Modified``, ``$expand=GoodsDeliveryLines``, ``__next`` paging, PUT of ``TrackingNumber``/``Remarks``/
  ``Description`` answering 204), goods delivery lines (PUT ``TrackingNumber``), ``crm/Addresses``,
  ``logistics/Items``, ``salesorder/SalesOrders``. ``$select`` is required (400 "Please add a $select..."), dates
  are ``/Date(ms)/``, another division is 403 with ``Reason: NoDivisionAccess``. Every answer carries
  ``X-RateLimit-*`` and ``X-RateLimit-Minutely-*`` headers (resets in epoch milliseconds); over 60 calls a
  minute or 5,000 a day the answer is 429 with an empty body and the headers of the limit it hit.
* Control (``/_sandbox/exact_online/``): ``deliveries``, ``touch``, ``refresh_token/check``, ``webhook`` (sends
  a signed notification to a URL).

The sandbox serves one host for every region: the region is the connection's host.
"""

from ml_connector_sandbox.exact_online.app import create_app
from ml_connector_sandbox.exact_online.state import (
    AUTHORIZATION_CODE,
    CLIENT_ID,
    CLIENT_SECRET,
    INITIAL_REFRESH_TOKEN,
    WEBHOOK_SECRET,
    ExactOnlineState,
)

__all__ = ["AUTHORIZATION_CODE", "CLIENT_ID", "CLIENT_SECRET", "INITIAL_REFRESH_TOKEN", "WEBHOOK_SECRET",
           "ExactOnlineState", "create_app"]
