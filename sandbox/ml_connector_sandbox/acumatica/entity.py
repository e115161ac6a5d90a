"""``/entity/{endpoint}/{version}/Shipment`` and ``/files/...``: the contract-based API as the Default endpoint
serves it.

* An endpoint name/version the instance does not have: 404 (ASP.NET's "No HTTP resource").
* ``GET .../Shipment``: ``$filter`` (OData v3: ``eq``/``ne`` on text and booleans, ``ge``/``gt``/``le``/``lt`` on
  ``LastModifiedDateTime`` with ``datetimeoffset'...'`` literals, ``and``, one level of parenthesised ``or``; a
  ``+`` that was not URL-encoded arrives as a space and the literal is refused), ``$expand`` (only the detail
  and linked entities named come back: ``Packages``, ``Details``, ``Orders``, ``ShippingSettings``,
  ``ShippingSettings/ShipToAddress``, ``ShippingSettings/ShipToContact``, ``files``), ``$top``, ``$skip``,
  ``$custom``. Every field is wrapped ``{"value": ...}``; an empty one is ``{}``.
* ``GET .../Shipment/{ShipmentNbr}``: one record.
* ``PUT .../Shipment`` (``If-Match: *``: update only, 412 when missing): wrapped top-level fields, ``note``,
  ``custom``, and ``Packages`` rows matched by ``id`` (a row without ``id`` is inserted as a new package; an
  unknown ``id`` is an error). A field sent unwrapped is refused (500, as Acumatica fails to bind it).
* ``GET .../ShipVia``: the Ship Via codes (``CarrierID``, ``Description``).
* ``GET .../SalesOrder/{OrderType}/{OrderNbr}`` (and ``GET .../SalesOrder`` with ``$filter``): the sales order,
  ``Details`` (``LineNbr``, ``InventoryID``, ``LineDescription``, ``OrderQty``, ``UnitPrice``) only when
  expanded; ``GET .../StockItem/{InventoryID}``: the item (``CountryOfOrigin``, ``TariffCode``). Both honour
  ``$select`` (top-level names and ``Details/<field>``; ``id``/``rowNumber`` always come back; a name the entity
  does not have is refused with a 500). 404 for a record that does not exist.
* ``PUT .../files/PX.Objects.SO.SOShipmentEntry/Document/{id}/{filename}``: attach (the same name replaces).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ml_connector_sandbox.acumatica.auth import require_session
from ml_connector_sandbox.acumatica.state import FILES_PATH, AcumaticaState
from ml_connector_sandbox.common import VendorError

NO_RESOURCE = {"message": "No HTTP resource was found that matches the request URI."}
TOP_FIELDS = ("ShipmentNbr", "Type", "Status", "Hold", "ShipVia", "CustomerID", "WarehouseID", "ResidentialDelivery",
              "FreightCost", "CreatedDateTime", "LastModifiedDateTime")
WRITABLE_TOP = {"FreightCost", "Hold", "ShipVia", "ResidentialDelivery"}
PACKAGE_FIELDS = ("LineNbr", "BoxID", "Description", "TrackingNbr", "Weight", "UOM", "Length", "Width", "Height",
                  "Confirmed")
WRITABLE_PACKAGE = {"TrackingNbr", "Weight", "BoxID", "Description", "Length", "Width", "Height"}
DETAIL_FIELDS = ("LineNbr", "InventoryID", "Description", "ShippedQty", "OrderType", "OrderNbr", "OrderLineNbr")
ORDER_FIELDS = ("OrderType", "OrderNbr")
ADDRESS_FIELDS = ("AddressLine1", "AddressLine2", "City", "State", "PostalCode", "Country")
CONTACT_FIELDS = ("BusinessName", "Attention", "Phone1", "Email")
SALES_ORDER_FIELDS = ("OrderType", "OrderNbr", "Status", "Hold", "CustomerID", "CurrencyID", "Date", "OrderTotal",
                      "LastModified")
SALES_ORDER_DETAIL_FIELDS = ("LineNbr", "InventoryID", "LineDescription", "OrderQty", "UnitPrice")
STOCK_ITEM_FIELDS = ("InventoryID", "Description", "ItemStatus", "CountryOfOrigin", "TariffCode", "LastModified")
EXPANDABLE = {"Packages", "Details", "Orders", "ShippingSettings", "ShippingSettings/ShipToAddress",
              "ShippingSettings/ShipToContact", "files"}


def wrap(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, datetime):
        return {"value": raw.isoformat(timespec="milliseconds")}
    return {"value": raw}


def _row(raw: dict[str, Any], fields: tuple[str, ...], number: int) -> dict[str, Any]:
    return {"id": raw["id"], "rowNumber": number, **{f: wrap(raw.get(f)) for f in fields}}


def render(state: AcumaticaState, shipment: dict[str, Any], expand: set[str], base: str, prefix: str,
           custom: list[str] | None = None) -> dict[str, Any]:
    """The record as the Default endpoint returns it."""
    record: dict[str, Any] = {"id": shipment["id"], "rowNumber": 1, "note": wrap(shipment.get("note")),
                              **{f: wrap(shipment.get(f)) for f in TOP_FIELDS}}
    if "Packages" in expand:
        record["Packages"] = [_row(p, PACKAGE_FIELDS, i) for i, p in enumerate(shipment["Packages"], start=1)]
    if "Details" in expand:
        record["Details"] = [_row(d, DETAIL_FIELDS, i) for i, d in enumerate(shipment["Details"], start=1)]
    if "Orders" in expand:
        record["Orders"] = [_row(o, ORDER_FIELDS, i) for i, o in enumerate(shipment["Orders"], start=1)]
    if expand & {"ShippingSettings", "ShippingSettings/ShipToAddress", "ShippingSettings/ShipToContact"}:
        settings: dict[str, Any] = {"ShipToAddressOverride": wrap(False), "ShipToContactOverride": wrap(False)}
        if "ShippingSettings/ShipToAddress" in expand:
            settings["ShipToAddress"] = {f: wrap(shipment["ShipToAddress"].get(f)) for f in ADDRESS_FIELDS}
        if "ShippingSettings/ShipToContact" in expand:
            settings["ShipToContact"] = {f: wrap(shipment["ShipToContact"].get(f)) for f in CONTACT_FIELDS}
        record["ShippingSettings"] = settings
    if "files" in expand:
        record["files"] = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{shipment['id']}/{name}")),
                            "filename": f"Shipment ({shipment['ShipmentNbr']})\\{name}",
                            "href": f"{prefix}/files/{uuid.uuid5(uuid.NAMESPACE_URL, shipment['id'] + '/' + name)}"}
                           for name in shipment["files"]]
    record["custom"] = {}
    for name in custom or []:
        view, _, field = name.partition(".")
        stored = (shipment["custom"].get(view) or {}).get(field)
        record["custom"].setdefault(view, {})[field] = {"type": "CustomStringField", "value": stored}
    record["_links"] = {"self": f"{prefix}/Shipment/{shipment['id']}",
                        "files:put": f"{prefix}/{FILES_PATH.replace('{id}', shipment['id'])}"}
    return record


def _select(request: Request, entity: str, top: tuple[str, ...],
            details: dict[str, tuple[str, ...]]) -> tuple[set[str], dict[str, set[str]]]:
    """``$select`` as (top-level fields, detail -> fields); without ``$select`` every field of both.

    :raises VendorError: a name the entity does not have (500, as Acumatica fails to resolve it).
    """
    raw = request.query_params.get("$select")
    if not raw:
        return set(top), {name: set(fields) for name, fields in details.items()}
    wanted_top: set[str] = set()
    wanted_details: dict[str, set[str]] = {}
    unknown = []
    for name in (n.strip() for n in raw.split(",") if n.strip()):
        detail, slash, field = name.partition("/")
        if slash and detail in details and field in details[detail]:
            wanted_details.setdefault(detail, set()).add(field)
        elif not slash and name in top:
            wanted_top.add(name)
        elif not slash and name in details:
            wanted_details[name] = set(details[name])
        else:
            unknown.append(name)
    if unknown:
        raise VendorError(500, {"message": "An error has occurred.",
                                "exceptionMessage": f"$select: {', '.join(unknown)} not found in {entity}"})
    return wanted_top, wanted_details


def render_sales_order(order: dict[str, Any], expand: set[str], select: tuple[set[str], dict[str, set[str]]],
                       prefix: str) -> dict[str, Any]:
    top, details = select
    record: dict[str, Any] = {"id": order["id"], "rowNumber": 1,
                              **{f: wrap(order.get(f)) for f in SALES_ORDER_FIELDS if f in top}}
    if "Details" in expand:
        fields = details.get("Details", set(SALES_ORDER_DETAIL_FIELDS))
        record["Details"] = [{"id": line["id"], "rowNumber": i,
                              **{f: wrap(line.get(f)) for f in SALES_ORDER_DETAIL_FIELDS if f in fields}}
                             for i, line in enumerate(order.get("Details", []), start=1)]
    record["custom"] = {}
    record["_links"] = {"self": f"{prefix}/SalesOrder/{order['id']}"}
    return record


# ---------------------------------------------------------------------------------------------- $filter

_TERM = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le)\s+(.+?)\s*$")


def _literal(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r"'(?:[^']|'')*'", text):
        return text[1:-1].replace("''", "'")
    match = re.fullmatch(r"datetimeoffset'([^']*)'", text)
    if match:
        try:
            parsed = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{match.group(1)}' is not a valid datetimeoffset (an unencoded '+' arrives as a "
                             "space)") from None
        if parsed.tzinfo is None:
            raise ValueError(f"'{match.group(1)}' has no offset")
        return parsed
    if re.fullmatch(r"'[^']*'", text):
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"cannot read the literal {text!r}") from None


def _split(text: str, word: str) -> list[str]:
    """Split on `` and ``/`` or `` outside parentheses and quotes."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    token = f" {word} "
    while i < len(text):
        c = text[i]
        if c == "'":
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        elif not quoted and depth == 0 and text[i:i + len(token)] == token:
            parts.append(text[start:i])
            i += len(token)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def compile_filter(text: str, entity: str = "Shipment", fields: tuple[str, ...] = TOP_FIELDS,
                   dates: tuple[str, ...] = ("LastModifiedDateTime", "CreatedDateTime")):
    """A predicate over a record of ``entity`` for an OData v3 ``$filter``. :raises ValueError: unreadable."""
    ands = []
    for part in _split(text.strip(), "and"):
        part = part.strip()
        if part.startswith("(") and part.endswith(")"):
            ors = [_compile_term(p, entity, fields, dates) for p in _split(part[1:-1], "or")]
            ands.append(lambda s, ors=ors: any(t(s) for t in ors))
        else:
            ands.append(_compile_term(part, entity, fields, dates))
    return lambda s: all(t(s) for t in ands)


def _compile_term(text: str, entity: str, fields: tuple[str, ...], dates: tuple[str, ...]):
    match = _TERM.match(text)
    if not match:
        raise ValueError(f"cannot read the condition {text!r}")
    field, op, literal = match.group(1), match.group(2), _literal(match.group(3))
    if field not in fields:
        raise ValueError(f"'{field}' is not a field of {entity} (filtering on detail entities is not supported)")
    if isinstance(literal, datetime) != (field in dates):
        raise ValueError(f"'{field}' cannot be compared with {match.group(3)}")
    ops = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
           "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}
    return lambda s: s.get(field) is not None and ops[op](s.get(field), literal)


# ---------------------------------------------------------------------------------------------- routes


def _expand(request: Request) -> set[str]:
    raw = request.query_params.get("$expand") or ""
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = names - EXPANDABLE
    if unknown:
        raise VendorError(500, {"message": "An error has occurred.",
                                "exceptionMessage": f"Unknown entity or field in $expand: {', '.join(sorted(unknown))}"})
    return names


def _custom(request: Request) -> list[str]:
    raw = request.query_params.get("$custom") or ""
    return [n.strip() for n in raw.split(",") if n.strip()]


def router(state: AcumaticaState) -> APIRouter:
    api = APIRouter(dependencies=[Depends(require_session(state))])

    def check_endpoint(endpoint: str, version: str) -> None:
        if (endpoint, version) not in state.endpoints():
            raise VendorError(404, NO_RESOURCE)

    def prefix(endpoint: str, version: str) -> str:
        return f"/entity/{endpoint}/{version}"

    @api.get("/entity/{endpoint}/{version}/Shipment")
    def list_shipments(endpoint: str, version: str, request: Request) -> JSONResponse:
        check_endpoint(endpoint, version)
        expand = _expand(request)
        predicate = lambda _s: True  # noqa: E731
        raw_filter = request.query_params.get("$filter")
        if raw_filter:
            try:
                predicate = compile_filter(raw_filter)
            except ValueError as exc:
                state.record_validation_error("Shipment $filter", [str(exc)])
                raise VendorError(500, {"message": "An error has occurred.",
                                        "exceptionMessage": f"Invalid $filter: {exc}"}) from None
        try:
            top = int(request.query_params.get("$top") or 0)
            skip = int(request.query_params.get("$skip") or 0)
        except ValueError:
            raise VendorError(400, {"message": "$top and $skip must be whole numbers"}) from None
        with state.lock:
            found = sorted((s for s in state.shipments.values() if predicate(s)), key=lambda s: s["ShipmentNbr"])
            found = found[skip:skip + top] if top else found[skip:]
            body = [render(state, s, expand, str(request.base_url), prefix(endpoint, version), _custom(request))
                    for s in found]
        return JSONResponse(body)

    @api.get("/entity/{endpoint}/{version}/ShipVia")
    def list_ship_via(endpoint: str, version: str) -> JSONResponse:
        check_endpoint(endpoint, version)
        return JSONResponse([{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"shipvia/{row['CarrierID']}")), "rowNumber": i,
                              "CarrierID": wrap(row["CarrierID"]), "Description": wrap(row["Description"])}
                             for i, row in enumerate(state.seed.get("ship_via", []), start=1)])

    def _sales_order_expand(request: Request) -> set[str]:
        names = {n.strip() for n in (request.query_params.get("$expand") or "").split(",") if n.strip()}
        if names - {"Details"}:
            raise VendorError(500, {"message": "An error has occurred.", "exceptionMessage":
                                    f"Unknown entity or field in $expand: {', '.join(sorted(names - {'Details'}))}"})
        return names

    def _sales_order_select(request: Request) -> tuple[set[str], dict[str, set[str]]]:
        try:
            return _select(request, "SalesOrder", SALES_ORDER_FIELDS, {"Details": SALES_ORDER_DETAIL_FIELDS})
        except VendorError:
            state.record_validation_error("SalesOrder $select", [request.query_params.get("$select") or ""])
            raise

    @api.get("/entity/{endpoint}/{version}/SalesOrder")
    def list_sales_orders(endpoint: str, version: str, request: Request) -> JSONResponse:
        check_endpoint(endpoint, version)
        expand, select = _sales_order_expand(request), _sales_order_select(request)
        predicate = lambda _o: True  # noqa: E731
        if request.query_params.get("$filter"):
            try:
                predicate = compile_filter(request.query_params["$filter"], "SalesOrder", SALES_ORDER_FIELDS,
                                           ("LastModified", "Date"))
            except ValueError as exc:
                state.record_validation_error("SalesOrder $filter", [str(exc)])
                raise VendorError(500, {"message": "An error has occurred.",
                                        "exceptionMessage": f"Invalid $filter: {exc}"}) from None
        with state.lock:
            state.increment("sales_order_reads")
            return JSONResponse([render_sales_order(o, expand, select, prefix(endpoint, version))
                                 for o in state.sales_orders.values() if predicate(o)])

    @api.get("/entity/{endpoint}/{version}/SalesOrder/{order_type}/{order_nbr}")
    def get_sales_order(endpoint: str, version: str, order_type: str, order_nbr: str,
                        request: Request) -> JSONResponse:
        check_endpoint(endpoint, version)
        expand, select = _sales_order_expand(request), _sales_order_select(request)
        order = state.find_sales_order(order_type, order_nbr)
        if order is None:
            raise VendorError(404, {"message": "No entity satisfies the condition."})
        with state.lock:
            state.increment("sales_order_reads")
            return JSONResponse(render_sales_order(order, expand, select, prefix(endpoint, version)))

    @api.get("/entity/{endpoint}/{version}/StockItem/{inventory_id}")
    def get_stock_item(endpoint: str, version: str, inventory_id: str, request: Request) -> JSONResponse:
        check_endpoint(endpoint, version)
        try:
            top, _ = _select(request, "StockItem", STOCK_ITEM_FIELDS, {})
        except VendorError:
            state.record_validation_error("StockItem $select", [request.query_params.get("$select") or ""])
            raise
        with state.lock:
            item = state.stock_items.get(inventory_id.upper())
            if item is None:
                raise VendorError(404, {"message": "No entity satisfies the condition."})
            state.increment("stock_item_reads")
            return JSONResponse({"id": item["id"], "rowNumber": 1,
                                 **{f: wrap(item.get(f)) for f in STOCK_ITEM_FIELDS if f in top},
                                 "custom": {}, "_links": {"self": f"{prefix(endpoint, version)}/StockItem/{item['id']}"}})

    @api.get("/entity/{endpoint}/{version}/Shipment/{number}")
    def get_shipment(endpoint: str, version: str, number: str, request: Request) -> JSONResponse:
        check_endpoint(endpoint, version)
        shipment = state.find(number=number) or state.find(record_id=number)
        if shipment is None:
            raise VendorError(404, {"message": "No entity satisfies the condition."})
        with state.lock:
            return JSONResponse(render(state, shipment, _expand(request), str(request.base_url),
                                       prefix(endpoint, version), _custom(request)))

    @api.put("/entity/{endpoint}/{version}/Shipment")
    async def put_shipment(endpoint: str, version: str, request: Request) -> JSONResponse:
        check_endpoint(endpoint, version)
        expand = _expand(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise VendorError(400, {"message": "The request is invalid."})
        number = (body.get("ShipmentNbr") or {}).get("value") if isinstance(body.get("ShipmentNbr"), dict) else None
        with state.lock:
            shipment = state.find(record_id=body.get("id")) or state.find(number=number)
            if shipment is None:
                if request.headers.get("If-Match") == "*":
                    raise VendorError(412, {"message": "The entity to update was not found."})
                raise VendorError(500, {"message": "An error has occurred.",
                                        "exceptionMessage": "Inserting shipments is not supported by the sandbox"})
            if state.take_one("fail_shipment_puts"):
                raise VendorError(500, {"message": "An error has occurred.",
                                        "exceptionMessage": "Another process has updated the 'SOShipment' record. "
                                                            "Your changes will be lost.",
                                        "exceptionType": "PX.Data.PXLockViolationException"})
            errors = _apply(state, shipment, body)
            if errors:
                state.record_validation_error("PUT Shipment", errors)
                raise VendorError(500, {"message": "An error has occurred.", "exceptionMessage": "; ".join(errors)})
            state.increment("shipment_puts")
            state.touch(shipment)
            return JSONResponse(render(state, shipment, expand, str(request.base_url), prefix(endpoint, version),
                                       [f"{v}.{f}" for v, fs in shipment["custom"].items() for f in fs]))

    @api.put("/entity/{endpoint}/{version}/files/PX.Objects.SO.SOShipmentEntry/Document/{record_id}/{filename}")
    async def put_file(endpoint: str, version: str, record_id: str, filename: str, request: Request) -> Response:
        check_endpoint(endpoint, version)
        content = await request.body()
        with state.lock:
            shipment = state.find(record_id=record_id)
            if shipment is None:
                raise VendorError(404, {"message": "No entity satisfies the condition."})
            if not content:
                state.record_validation_error("PUT files", [f"{filename}: empty file"])
                raise VendorError(400, {"message": "The file is empty."})
            state.increment("files_replaced" if filename in shipment["files"] else "files_uploaded")
            shipment["files"][filename] = content
        return Response(status_code=204)

    @api.api_route("/entity/{endpoint}/{version}/{rest:path}", methods=["GET", "PUT", "POST", "DELETE"])
    def other(endpoint: str, version: str, rest: str) -> Response:
        check_endpoint(endpoint, version)
        raise VendorError(404, NO_RESOURCE)

    return api


def _unwrap(name: str, field: Any, errors: list[str]) -> tuple[bool, Any]:
    if not isinstance(field, dict):
        errors.append(f"{name}: a value must be sent as {{\"value\": ...}}, got {field!r}")
        return False, None
    return True, field.get("value")


def _apply(state: AcumaticaState, shipment: dict[str, Any], body: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for name, field in body.items():
        if name in ("id", "ShipmentNbr", "rowNumber", "_links"):
            continue
        if name == "note":
            ok, value = _unwrap(name, field, errors)
            if ok:
                shipment["note"] = value or ""
        elif name == "custom":
            for view, fields in (field or {}).items():
                for fname, spec in (fields or {}).items():
                    if not isinstance(spec, dict) or "value" not in spec:
                        errors.append(f"custom.{view}.{fname}: expected {{\"type\": ..., \"value\": ...}}")
                        continue
                    shipment["custom"].setdefault(view, {})[fname] = spec["value"]
        elif name == "Packages":
            errors += _apply_packages(state, shipment, field)
        elif name in WRITABLE_TOP:
            ok, value = _unwrap(name, field, errors)
            if ok:
                shipment[name] = value
        else:
            errors.append(f"{name}: not a writable field of Shipment in the sandbox")
    return errors


def _apply_packages(state: AcumaticaState, shipment: dict[str, Any], rows: Any) -> list[str]:
    errors: list[str] = []
    if not isinstance(rows, list):
        return ["Packages: must be a list of rows"]
    for row in rows:
        if not isinstance(row, dict):
            errors.append("Packages: every row must be an object")
            continue
        if row.get("id"):
            target = next((p for p in shipment["Packages"] if p["id"] == row["id"]), None)
            if target is None:
                errors.append(f"Packages: no row with id {row['id']}")
                continue
            if row.get("delete"):
                shipment["Packages"].remove(target)
                continue
        else:  # Acumatica inserts a detail row sent without id
            target = {"id": str(uuid.uuid4()), "LineNbr": len(shipment["Packages"]) + 1, "TrackingNbr": ""}
            shipment["Packages"].append(target)
            state.increment("packages_inserted")
        for name, field in row.items():
            if name in ("id", "rowNumber", "delete"):
                continue
            if name not in WRITABLE_PACKAGE:
                errors.append(f"Packages.{name}: not writable")
                continue
            ok, value = _unwrap(f"Packages.{name}", field, errors)
            if ok:
                target[name] = value
    return errors
