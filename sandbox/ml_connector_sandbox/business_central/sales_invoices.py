"""Customers (read; ``$filter`` on ``lastModifiedDateTime`` too), sales invoices (deep insert, PATCH with ``If-Match``, lines, ``Microsoft.NAV.post``) and
webhook subscriptions (``/v2.0/subscriptions`` with the ``validationToken`` handshake) in API v2.0.

* ``salesInvoices``: ``POST`` with ``salesInvoiceLines`` (deep insert) creates a ``Draft``; ``customerId`` and
  every line's ``itemId`` must exist (BC's 400 otherwise). ``PATCH`` needs ``If-Match`` and works on drafts only.
  ``salesInvoices({id})/Microsoft.NAV.post`` answers 204 and the invoice becomes ``Open`` with a posted number;
  a posted invoice cannot be changed. ``$filter`` on ``externalDocumentNumber``, ``status``, ``number``.
* ``subscriptions`` (not under a company): ``POST {notificationUrl, resource, clientState}`` first POSTs
  ``notificationUrl?validationToken=<token>`` and expects the token back with 200 (else 400); the subscription
  expires after 3 days; ``PATCH`` with ``If-Match`` renews it (handshake again); ``DELETE``.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

import requests
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ml_connector_sandbox.business_central.companies import COMPANY, check_company
from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.errors import (
    ENTITY_CHANGED,
    INVALID_TOKEN,
    bad_request,
    method_not_allowed,
    odata_error,
    record_not_found,
)
from ml_connector_sandbox.business_central.odata import (
    FilterField,
    add_route,
    collection,
    context_root,
    entity_key,
    iso,
    json_response,
    make_etag,
)
from ml_connector_sandbox.business_central.state import BusinessCentralState

INVOICE_FILTER_FIELDS = {
    "id": FilterField("guid"), "number": FilterField("string"), "externalDocumentNumber": FilterField("string"),
    "status": FilterField("string", ("Draft", "In Review", "Open", "Paid", "Canceled", "Corrective")),
    "customerNumber": FilterField("string"), "lastModifiedDateTime": FilterField("datetime"),
}
CUSTOMER_FILTER_FIELDS = {"id": FilterField("guid"), "number": FilterField("string"),
                          "displayName": FilterField("string"), "email": FilterField("string"),
                          "lastModifiedDateTime": FilterField("datetime")}
HEADER_FIELDS = ("externalDocumentNumber", "invoiceDate", "postingDate", "shipToName", "shipToContact",
                 "shipToAddressLine1", "shipToAddressLine2", "shipToCity", "shipToCountry", "shipToState",
                 "shipToPostCode")
LINE_TYPES = ("Comment", "Account", "Item", "Resource", "Fixed Asset", "Charge")


def _line(state: BusinessCentralState, document_id: str, sequence: int, body: dict[str, Any]) -> dict[str, Any]:
    line_type = body.get("lineType", "Item")
    if line_type not in LINE_TYPES:
        raise bad_request(f"The value '{line_type}' is not valid for lineType.")
    item = None
    if line_type == "Item":
        wanted = str(body.get("itemId") or "").lower()
        item = next((i for i in state.items.values() if i["id"] == wanted), None)
        if item is None:
            raise bad_request(f"The Item does not exist. Identification fields and values: Id='{wanted}'")
    description = str(body.get("description") or (item["displayName"] if item else ""))
    if len(description) > 100:
        raise odata_error(400, "Application_StringExceededLength",
                          f"The length of the string is {len(description)}, but it must be less than or equal to "
                          "100 characters.")
    quantity = float(body.get("quantity") or 0) if item else 0.0
    price = float(body.get("unitPrice", item["unitPrice"] if item else 0) or 0)
    return {"id": str(uuid.uuid4()), "documentId": document_id, "sequence": sequence, "lineType": line_type,
            "itemId": item["id"] if item else "00000000-0000-0000-0000-000000000000",
            "lineObjectNumber": item["number"] if item else "", "description": description,
            "quantity": quantity, "unitPrice": price, "amountExcludingTax": round(quantity * price, 2)}


def router(state: BusinessCentralState, build: EntityBuilder) -> APIRouter:
    api = APIRouter(tags=["salesInvoices"])

    def invoices() -> dict[str, dict[str, Any]]:
        return state.invoices

    def doc(invoice: dict[str, Any], expand: bool = False) -> dict[str, Any]:
        lines = invoice["lines"]
        body = {"@odata.etag": make_etag("SI", invoice["id"], invoice["version"]),
                **{k: v for k, v in invoice.items() if k not in ("lines", "version")},
                "totalAmountExcludingTax": round(sum(x["amountExcludingTax"] for x in lines), 2)}
        if expand:
            body["salesInvoiceLines"] = [{"@odata.etag": make_etag("SIL", x["id"], invoice["version"]), **x}
                                         for x in lines]
        return body

    def find(key: str) -> dict[str, Any]:
        invoice = invoices().get(entity_key(key) or "")
        if invoice is None:
            raise record_not_found("Sales Header", entity_key(key) or "")
        return invoice

    def check_etag(request: Request, invoice: dict[str, Any]) -> None:
        given = request.headers.get("If-Match")
        if not given:
            raise odata_error(400, *INVALID_TOKEN)
        if given != "*" and given != make_etag("SI", invoice["id"], invoice["version"]):
            raise odata_error(412, *ENTITY_CHANGED)

    def touch(invoice: dict[str, Any]) -> None:
        invoice["version"] = state.next_rowversion()
        invoice["lastModifiedDateTime"] = iso(state.now())

    async def sales_invoices(company: str, request: Request) -> Response:
        key = request.path_params.get("key")
        body = await request.json() if request.method in ("POST", "PATCH") and await request.body() else {}
        with state.lock:
            company_key = check_company(state, company)
            context = f"{context_root(request, 'v2.0')}#companies({company_key})/salesInvoices"
            expand = "salesInvoiceLines" in (request.query_params.get("$expand") or "")
            if key is None and request.method == "GET":
                docs = [doc(i, expand) for i in invoices().values()]
                return collection(request, state, context, docs, INVOICE_FILTER_FIELDS, "salesInvoice",
                                  sort_key="number")
            if key is None and request.method == "POST":
                customer = next((c for c in state.customers.values()
                                 if c["id"] == str(body.get("customerId") or "").lower()
                                 or c["number"] == body.get("customerNumber")), None)
                if customer is None:
                    raise bad_request("The Customer does not exist. Identification fields and values: "
                                      f"Id='{body.get('customerId') or body.get('customerNumber')}'")
                ext = str(body.get("externalDocumentNumber") or "")
                if len(ext) > 35:
                    raise odata_error(400, "Application_StringExceededLength", f"The length of the string is "
                                      f"{len(ext)}, but it must be less than or equal to 35 characters.")
                invoice_id = str(uuid.uuid4())
                state.invoice_seq += 1
                invoice = {"id": invoice_id, "number": f"S-INV{state.invoice_seq}",
                           "customerId": customer["id"], "customerNumber": customer["number"],
                           "customerName": customer["name"], "status": "Draft",
                           **{f: str(body.get(f) or "") for f in HEADER_FIELDS}, "lines": []}
                invoice["lines"] = [_line(state, invoice_id, (n + 1) * 10000, line)
                                    for n, line in enumerate(body.get("salesInvoiceLines") or [])]
                touch(invoice)
                invoices()[invoice_id] = invoice
                state.increment("invoices_created")
                created = doc(invoice, True)
                return json_response({"@odata.context": f"{context}/$entity", **created}, status=201,
                                     headers={"ETag": created["@odata.etag"]})
            invoice = find(key)
            if request.method == "GET":
                return json_response({"@odata.context": f"{context}/$entity", **doc(invoice, expand)})
            if request.method == "PATCH":
                check_etag(request, invoice)
                if invoice["status"] != "Draft":
                    raise bad_request(f"Status must be equal to 'Draft' in Sales Header: Document Type=Invoice, "
                                      f"No.={invoice['number']}. Current value is '{invoice['status']}'.")
                for field, value in body.items():
                    if field not in HEADER_FIELDS:
                        raise bad_request(f"The sandbox does not let PATCH change '{field}' of salesInvoices.")
                    invoice[field] = str(value or "")
                touch(invoice)
                state.increment("invoices_patched")
                return json_response(doc(invoice), headers={"ETag": doc(invoice)["@odata.etag"]})
            raise method_not_allowed(f"'{request.method}' requests are not allowed on this resource.")

    add_route(api, f"{COMPANY}/salesInvoices", sales_invoices, documented=("GET", "POST"))
    add_route(api, f"{COMPANY}/salesInvoices({{key}})", sales_invoices, documented=("GET", "PATCH"))

    async def post_invoice(company: str, key: str, request: Request) -> Response:
        with state.lock:
            check_company(state, company)
            if request.method != "POST":
                raise method_not_allowed("Only POST is allowed on a bound action.")
            invoice = find(key)
            if invoice["status"] != "Draft":
                raise bad_request(f"The Sales Header does not exist. Identification fields and values: Document "
                                  f"Type='Invoice',No.='{invoice['number']}'")
            if not any(x["lineType"] != "Comment" for x in invoice["lines"]):
                raise bad_request("There is nothing to post.")
            invoice["status"] = "Open"
            invoice["number"] = invoice["number"].replace("S-INV", "PS-INV")
            touch(invoice)
            state.increment("invoices_posted")
            return Response(status_code=204)

    add_route(api, f"{COMPANY}/salesInvoices({{key}})/Microsoft.NAV.post", post_invoice, documented=("POST",))

    async def invoice_lines(company: str, key: str, request: Request) -> Response:
        line_key = request.path_params.get("line")
        body = await request.json() if request.method == "POST" else {}
        with state.lock:
            company_key = check_company(state, company)
            invoice = find(key)
            if request.method == "GET" and line_key is None:
                return json_response({"@odata.context": f"{context_root(request, 'v2.0')}#companies({company_key})"
                                      f"/salesInvoices({invoice['id']})/salesInvoiceLines",
                                      "value": doc(invoice, True)["salesInvoiceLines"]})
            if invoice["status"] != "Draft":
                raise bad_request(f"Status must be equal to 'Draft' in Sales Header: Document Type=Invoice, "
                                  f"No.={invoice['number']}.")
            if request.method == "POST" and line_key is None:
                sequence = max([x["sequence"] for x in invoice["lines"]] or [0]) + 10000
                line = _line(state, invoice["id"], sequence, body)
                invoice["lines"].append(line)
                touch(invoice)
                return json_response(line, status=201)
            if request.method == "DELETE" and line_key is not None:
                wanted = entity_key(line_key)
                before = len(invoice["lines"])
                invoice["lines"] = [x for x in invoice["lines"] if x["id"] != wanted]
                if len(invoice["lines"]) == before:
                    raise record_not_found("Sales Line", wanted or "")
                touch(invoice)
                return Response(status_code=204)
            raise method_not_allowed(f"'{request.method}' requests are not allowed on this resource.")

    add_route(api, f"{COMPANY}/salesInvoices({{key}})/salesInvoiceLines", invoice_lines, documented=("GET", "POST"))
    add_route(api, f"{COMPANY}/salesInvoices({{key}})/salesInvoiceLines({{line}})", invoice_lines,
              documented=("DELETE",))

    async def customers(company: str, request: Request) -> Response:
        with state.lock:
            company_key = check_company(state, company)
            if request.method != "GET":
                raise method_not_allowed("The sandbox serves only GET on customers.")
            docs = [{"@odata.etag": make_etag("CU", c["id"], 1), "id": c["id"], "number": c["number"],
                     "displayName": c["name"], "type": "Company", "email": c.get("email", ""), "blocked": " ",
                     "lastModifiedDateTime": iso(state.customer_modified.get(c["number"])
                                                 or state.started_at - timedelta(days=30))}
                    for c in state.customers.values()]
            return collection(request, state, f"{context_root(request, 'v2.0')}#companies({company_key})/customers",
                              docs, CUSTOMER_FILTER_FIELDS, "customer", sort_key="number")

    add_route(api, f"{COMPANY}/customers", customers)

    # -- webhook subscriptions -------------------------------------------------------------------------------
    def subscriptions() -> dict[str, dict[str, Any]]:
        return state.subscriptions

    def handshake(url: str) -> None:
        token = secrets.token_urlsafe(16)
        try:
            answer = requests.post(url, params={"validationToken": token}, timeout=5)
        except requests.RequestException as exc:
            raise bad_request(f"The subscription could not be validated: {exc.__class__.__name__}") from None
        if answer.status_code != 200 or answer.text.strip().strip('"') != token:
            raise bad_request(f"The subscription could not be validated: the notification URL answered "
                              f"{answer.status_code} without the validation token.")
        state.increment("subscription_handshakes")

    def subscription_doc(sub: dict[str, Any]) -> dict[str, Any]:
        return {"@odata.etag": make_etag("WS", sub["subscriptionId"], sub["version"]),
                **{k: v for k, v in sub.items() if k != "version"}}

    async def subscription_route(request: Request) -> Response:
        key = request.path_params.get("key")
        body = await request.json() if request.method in ("POST", "PATCH") and await request.body() else {}
        if request.method == "POST" and key is None:
            if not str(body.get("notificationUrl") or "").startswith(("https://", "http://127.0.0.1", "http://localhost")):
                raise bad_request("The notificationUrl must be an https URL.")
            handshake(body["notificationUrl"])  # outside the lock: the subscriber may be slow
            with state.lock:
                sub_id = uuid.uuid4().hex
                sub = {"subscriptionId": sub_id, "notificationUrl": body["notificationUrl"],
                       "resource": str(body.get("resource") or ""), "clientState": str(body.get("clientState") or ""),
                       "userId": str(uuid.uuid4()), "lastModifiedDateTime": iso(state.now()),
                       "expirationDateTime": iso(state.now() + timedelta(days=3)), "version": state.next_rowversion()}
                subscriptions()[sub_id] = sub
                return json_response(subscription_doc(sub), status=201)
        with state.lock:
            if key is None:
                return json_response({"value": [subscription_doc(s) for s in subscriptions().values()]})
            sub = subscriptions().get(key.strip("'"))
            if sub is None:
                raise record_not_found("API Webhook Subscription", key)
            if request.method == "GET":
                return json_response(subscription_doc(sub))
            if request.method == "DELETE":
                subscriptions().pop(sub["subscriptionId"])
                return Response(status_code=204)
            if request.method != "PATCH":
                raise method_not_allowed(f"'{request.method}' requests are not allowed on this resource.")
            if not request.headers.get("If-Match"):
                raise odata_error(400, *INVALID_TOKEN)
            if request.headers["If-Match"] not in ("*", subscription_doc(sub)["@odata.etag"]):
                raise odata_error(412, *ENTITY_CHANGED)
            url = sub["notificationUrl"]
        handshake(url)
        with state.lock:
            sub.update(expirationDateTime=iso(state.now() + timedelta(days=3)), lastModifiedDateTime=iso(state.now()),
                       version=state.next_rowversion())
            if body.get("clientState") is not None:
                sub["clientState"] = str(body["clientState"])
            return json_response(subscription_doc(sub))

    add_route(api, "/v2.0/subscriptions", subscription_route, documented=("GET", "POST"))
    add_route(api, "/v2.0/subscriptions({key})", subscription_route, documented=("GET", "PATCH", "DELETE"))
    return api
