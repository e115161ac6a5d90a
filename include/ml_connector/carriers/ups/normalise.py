"""Small readers and writers for UPS's JSON quirks: object-or-array, presence indicators, string numbers,
two time-offset styles, and the short string fields of the Ship request ("notes" = ``docs/vendors/ups.md``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from ml_connector.errors import RecordError
from ml_connector.models import Money

WEIGHT_UNITS = frozenset({"LBS", "KGS", "OZS"})  # Shipping.yaml #/components/schemas/PackageWeight_UnitOfMeasurement
WEIGHT_MAX_CHARS = 5  # #/components/schemas/Package_PackageWeight/properties/Weight maxLength
DIMENSION_MAX_CHARS = 3  # #/components/schemas/Package_Dimensions/properties/Length maxLength

_GMT_OFFSET = re.compile(r"^([+-])?(\d{1,2})(?:[:.]?(\d{2}))?$")
# The CIE answered void requests with carriage returns escaped as XML entities (notes trap 11).
_CIE_GARBAGE = re.compile(r"&#x?[0-9a-fA-F]+;")


def as_list(value: Any) -> list[Any]:
    """Return ``value`` as a list, whatever UPS sent: ``None`` -> ``[]``, an object -> ``[object]``.

    UPS returns many "array" fields as a single object when there is one item, whatever the version
    (notes trap 1), so every such field is read through this.

    :param value: the decoded JSON value.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    return [value]


def first(value: Any) -> Any:
    """Return the first item of an object-or-array field, or ``None`` when empty.

    :param value: the decoded JSON value.
    """
    items = as_list(value)
    return items[0] if items else None


def has_indicator(obj: Any, key: str) -> bool:
    """Test a UPS presence indicator: the key being there means true, whatever its value (``""`` included).

    Notes trap 5 (Shipping.yaml #/components/schemas/ShipTo_Address/properties/ResidentialAddressIndicator:
    "any value inside is ignored").

    :param obj: the JSON object that may hold the indicator.
    :param key: the indicator's name, e.g. ``ValidAddressIndicator``.
    """
    return isinstance(obj, Mapping) and key in obj


def strip_str(value: Any) -> str | None:
    """Return ``value`` as a stripped string without the CIE's ``&#xD;`` entities; blank -> ``None``.

    :param value: a JSON scalar (numbers are turned into strings) or ``None``.
    """
    if value is None or isinstance(value, (Mapping, list)):
        return None
    text = _CIE_GARBAGE.sub("", str(value)).strip()
    return text or None


def get_path(obj: Any, *keys: str) -> Any:
    """Walk nested objects by key, taking the first item wherever UPS sent an array.

    :param obj: the JSON object to start from.
    :param keys: the keys to follow.
    """
    current = obj
    for key in keys:
        current = first(current)
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def parse_gmt_offset(value: str | None) -> timezone | None:
    """Parse a UPS GMT offset in either style: Track ``"-05:00"`` or Track Alert ``"-04.00"`` (notes trap 9).

    :param value: the offset string; ``"+0530"`` and ``"-5"`` are read too.
    :return: the fixed-offset timezone, or ``None`` when the value is blank or unreadable (callers then fall
        back to the GMT date and time fields).
    """
    text = strip_str(value)
    if not text:
        return None
    match = _GMT_OFFSET.match(text)
    if not match:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if hours > 23 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def parse_ups_datetime(date: str, time: str | None = None, gmt_offset: str | tzinfo | None = None) -> datetime:
    """Build an aware datetime from UPS's separate date and time strings.

    :param date: ``YYYYMMDD``.
    :param time: ``HHMMSS``; a dropped leading zero (``"74700"``, Tracking.yaml
        #/components/schemas/Activity/properties/gmtTime/example) is restored with zfill; blank -> midnight.
    :param gmt_offset: the local offset (either style, or a tzinfo); ``None`` means the values are GMT.
    :raises ValueError: the date or time is not a valid calendar value.
    """
    date_text = strip_str(date)
    if not date_text or len(date_text) != 8 or not date_text.isdigit():
        raise ValueError(f"UPS date {date!r} is not YYYYMMDD")
    time_text = (strip_str(time) or "000000").zfill(6)
    if len(time_text) != 6 or not time_text.isdigit():
        raise ValueError(f"UPS time {time!r} is not HHMMSS")
    tz = gmt_offset if isinstance(gmt_offset, tzinfo) else parse_gmt_offset(gmt_offset)
    naive = datetime.strptime(date_text + time_text, "%Y%m%d%H%M%S")
    return naive.replace(tzinfo=tz or UTC)


def activity_datetime(
    local_date: Any, local_time: Any, gmt_date: Any, gmt_time: Any, gmt_offset: Any
) -> datetime | None:
    """Date a tracking activity from whichever fields UPS filled in, or ``None`` when none are usable.

    Local date/time plus offset is the documented pair ("A field that shows how local time was
    calculated", UPSTrackAlert.yaml #/components/schemas/TrackingEventRequest/properties/gmtOffset);
    without an offset the GMT fields are exact; a lone local time is read as GMT (off by hours, but ordered).

    :param local_date: ``YYYYMMDD`` local date.
    :param local_time: ``HHMMSS`` local time.
    :param gmt_date: ``YYYYMMDD`` GMT date.
    :param gmt_time: ``HHMMSS`` GMT time.
    :param gmt_offset: local offset in either style.
    """
    offset = parse_gmt_offset(gmt_offset) if isinstance(gmt_offset, str) else None
    attempts = []
    if offset is not None:
        attempts.append((local_date, local_time, offset))
    attempts.append((gmt_date, gmt_time, None))
    attempts.append((local_date, local_time, None))
    for date, time, tz in attempts:
        if not strip_str(date):
            continue
        try:
            moment = parse_ups_datetime(date, time, tz)
        except ValueError:
            continue
        # Show GMT-derived moments in local time when the offset is known (same instant).
        return moment.astimezone(offset) if offset is not None else moment
    return None


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _plain(number: Decimal) -> str:
    """Format without exponent or trailing zeros (``Decimal("5.0")`` -> ``"5"``)."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_weight(
    value: Decimal, unit: str, *, record: str | None = None, field: str = "weight"
) -> str:
    """Format a package weight for ``PackageWeight.Weight``, a string of at most 5 characters.

    Rounds *up* to one decimal (a rounded-down weight is an under-declaration UPS audits and bills), then
    to a whole number when one decimal does not fit (``1234.56`` -> ``"1235"``).

    :param value: the weight, in ``unit``.
    :param unit: ``LBS``, ``KGS`` or ``OZS`` (notes trap 7: three letters, not LB/KG).
    :param record: the ERP document number, for the error message.
    :param field: the field named in the error message.
    :raises RecordError: the weight is zero, negative, unreadable or too large for 5 characters.
    """
    if unit not in WEIGHT_UNITS:
        raise RecordError(
            f"weight unit {unit!r} is not one UPS accepts (use one of {', '.join(sorted(WEIGHT_UNITS))})",
            record=record, field=field,
        )
    number = _decimal(value)
    if number is None or number <= 0:
        raise RecordError(f"{field} {value!r} {unit} is not a positive number", record=record, field=field)
    for step in (Decimal("0.1"), Decimal("1")):
        text = _plain(number.quantize(step, rounding=ROUND_CEILING))
        if len(text) <= WEIGHT_MAX_CHARS:
            return text
    raise RecordError(
        f"{field} {_plain(number)} {unit} does not fit UPS's {WEIGHT_MAX_CHARS}-character weight field; "
        "check the weight and its unit on the ERP document",
        record=record, field=field,
    )


def format_dimension(value: Decimal, *, record: str | None = None, field: str = "dimensions") -> str:
    """Format a package dimension for ``Dimensions.Length|Width|Height``, a string of at most 3 characters.

    Rounds up to whole units: a box declared smaller than it is gets re-measured and billed by UPS.

    :param value: the dimension, in the package's dimension unit.
    :param record: the ERP document number, for the error message.
    :param field: the field named in the error message.
    :raises RecordError: the dimension is zero, negative, unreadable or above 999.
    """
    number = _decimal(value)
    if number is None or number <= 0:
        raise RecordError(f"{field} {value!r} is not a positive number", record=record, field=field)
    text = _plain(number.quantize(Decimal("1"), rounding=ROUND_CEILING))
    if len(text) > DIMENSION_MAX_CHARS:
        raise RecordError(
            f"{field} {_plain(number)} does not fit UPS's {DIMENSION_MAX_CHARS}-character dimension field "
            "(maximum 999); check the dimensions and their unit on the ERP document",
            record=record, field=field,
        )
    return text


def money(obj: Any) -> Money | None:
    """Read a UPS charge ``{"CurrencyCode": "USD", "MonetaryValue": "12.34"}`` (strings, notes trap 4).

    :param obj: the charge object (or a one-item array of it).
    :return: the amount, or ``None`` when the object, its currency or a readable value is missing.
    """
    charge = first(obj)
    if not isinstance(charge, Mapping):
        return None
    currency = strip_str(charge.get("CurrencyCode"))
    amount = _decimal(strip_str(charge.get("MonetaryValue")) or "")
    if not currency or amount is None:
        return None
    return Money(amount=amount, currency=currency.upper())


def split_us_postal_code(value: str | None) -> tuple[str, str | None] | None:
    """Split a US/PR ZIP code into its 5-digit and optional 4-digit parts.

    :param value: ``"21093"``, ``"21093-1234"``, ``"21093 1234"`` or ``"210931234"``.
    :return: ``(zip5, plus4 or None)``, or ``None`` when the value is not 5 or 9 digits.
    """
    digits = re.sub(r"[\s-]", "", value or "")
    if not digits.isdigit() or len(digits) not in (5, 9):
        return None
    return digits[:5], (digits[5:] or None)


def alert_messages(alerts: Any) -> list[str]:
    """Format UPS ``Alert`` entries (object-or-array of ``{Code, Description}``) as ``"UPS <code>: <text>"``.

    :param alerts: the ``Response.Alert`` value.
    """
    messages = []
    for alert in as_list(alerts):
        if not isinstance(alert, Mapping):
            continue
        code, text = strip_str(alert.get("Code")), strip_str(alert.get("Description"))
        if code or text:
            messages.append(f"UPS {code}: {text}" if code and text else f"UPS {code or text}")
    return messages
