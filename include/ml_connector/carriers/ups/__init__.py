"""UPS: every UPS rule and code lives in this package, once.

:mod:`.hook` is the only I/O (karrio's "one seam"); :mod:`.carrier` is the
:class:`~ml_connector.carriers.protocol.Carrier`; :mod:`.rules` holds the rules on an order as a whole (address,
references, shipper number, packaging). The rest is pure mapping (karrio style) between canonical records and UPS
REST bodies, one module per vendor spec, so each reads side by side with its YAML in
``sandbox/ml_connector_sandbox/specs/ups``:
:mod:`.address_validation` (AddressValidation.yaml), :mod:`.shipping` (Shipping.yaml), :mod:`.tracking`
(Tracking.yaml, UPSTrackAlert.yaml), :mod:`.error_response` (the one error normaliser), :mod:`.codes`
(code tables) and :mod:`.normalise` (UPS JSON quirks). ``docs/vendors/ups.md`` explains the traps cited.
"""

from ml_connector.carriers.ups.address_validation import build_xav_request, parse_xav_response
from ml_connector.carriers.ups.codes import (
    DEFAULT_SHIP_METHOD_MAP,
    SERVICE_CODES,
    build_ship_method_map,
    resolve_service,
    tracking_status,
)
from ml_connector.carriers.ups.error_response import parse_error
from ml_connector.carriers.ups.normalise import (
    as_list,
    format_dimension,
    format_weight,
    has_indicator,
    money,
    parse_gmt_offset,
    parse_ups_datetime,
    strip_str,
)
from ml_connector.carriers.ups.shipping import build_ship_request, parse_ship_response, parse_void_response
from ml_connector.carriers.ups.tracking import (
    build_reference_track_params,
    build_track_params,
    parse_reference_track_response,
    parse_track_alert_event,
    parse_track_response,
    tracking_warnings,
)

__all__ = [
    "DEFAULT_SHIP_METHOD_MAP",
    "SERVICE_CODES",
    "as_list",
    "build_reference_track_params",
    "build_ship_method_map",
    "build_ship_request",
    "build_track_params",
    "build_xav_request",
    "format_dimension",
    "format_weight",
    "has_indicator",
    "money",
    "parse_error",
    "parse_gmt_offset",
    "parse_reference_track_response",
    "parse_ship_response",
    "parse_track_alert_event",
    "parse_track_response",
    "parse_ups_datetime",
    "parse_void_response",
    "parse_xav_response",
    "resolve_service",
    "strip_str",
    "tracking_status",
    "tracking_warnings",
]
