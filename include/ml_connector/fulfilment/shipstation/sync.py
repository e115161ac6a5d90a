"""Business Central <-> ShipStation, the two-way logic (no Airflow): items out by SKU, orders back as documents.

* :meth:`ShipStationSync.push_items`: Business Central items modified in the window, plus the items Business
  Central's webhook notifications in the inbox name (whatever their modification time; the rows are marked done
  after the push; a ``collection`` notification reads the items modified since it), each looked up in ShipStation
  by SKU (= item number); a product found is merged and PUT whole (v1 has no partial update and no create); a SKU
  ShipStation does not hold is recorded ``missing_sku`` in the ledger and reported, never dropped.
* :meth:`ShipStationSync.report_customers`: ShipStation v1 only reads customers, so Business Central ship-to
  details cannot be pushed; customers modified in the window that ShipStation does not know are recorded
  ``unknown_customer`` and reported.
* :meth:`ShipStationSync.collect`: the order ids to look at: every pending webhook delivery's ``resource_url``
  followed (only on the configured host; others are marked done with the reason), plus a poll of the window:
  ``/shipments`` (label shipments created in it) plus ``/orders?orderStatus=shipped`` (orders marked shipped
  outside label creation, which ``/shipments`` leaves out) and, when open orders are booked, ``/orders`` of each
  open status (edits no webhook reported), all on ``modifyDateStart``/``modifyDateEnd``.
* :meth:`ShipStationSync.book`: each order read again and booked into Business Central, keyed on ``orderKey`` as
  the external document number: looked up first, so three deliveries of one webhook plus the poll make one
  document. Open orders keep a draft up to date (an edit updates the same document); a shipped order's document
  gets the tracking comment line and, for sales invoices, is posted with ``Microsoft.NAV.post``; a posted one is
  never touched again. A customer or SKU Business Central does not know is a record error naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ml_connector.errors import ApiError, AuthenticationError, ConfigurationError, RecordError
from ml_connector.fulfilment.shipstation import mapping
from ml_connector.fulfilment.shipstation.webhook import SOURCE
from ml_connector.ledger import fulfilment

log = logging.getLogger(__name__)

ENTITY_SETS = {"sales_invoice": "salesInvoices", "sales_order": "salesOrders"}


@dataclass
class Outcome:
    """What one step did, for the run summary (keys only)."""

    done: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


class ShipStationSync:
    """The two-way sync of one pipeline.

    :param pipeline_id: the DAG id (the ledger namespace).
    :param shipstation: a :class:`~ml_connector.fulfilment.shipstation.hook.ShipStationHook`.
    :param erp: the Business Central hook.
    :param ledger: the ledger.
    :param document: ``sales_invoice`` (posted) or ``sales_order``.
    :param customer_field: the order field holding the Business Central customer number.
    :param book_open_orders: keep a draft document for orders not shipped yet.
    """

    def __init__(self, pipeline_id: str, *, shipstation: Any, erp: Any, ledger: Any, document: str = "sales_invoice",
                 customer_field: str = "customerUsername", book_open_orders: bool = True) -> None:
        self.pipeline_id = pipeline_id
        self.shipstation, self.erp, self.ledger = shipstation, erp, ledger
        self.document = document
        self.entity_set = ENTITY_SETS[document]
        self.customer_field = customer_field
        self.book_open_orders = book_open_orders
        self._ids: dict[tuple[str, str], str | None] = {}

    # -- items out ---------------------------------------------------------------------------------------------

    def push_items(self, start: datetime, end: datetime) -> Outcome:
        """Push the items modified in ``[start, end)`` plus those Business Central's item notifications name
        (whatever their modification time); the notifications are marked done once their items are pushed."""
        outcome = Outcome()
        items = {str(item.get("id")): item for item in self.erp.iter_items_modified(start, end)}
        deliveries, notes = self.ledger.inbox_pending(self.erp_source), {}
        for delivery in deliveries:
            try:
                entry = json.loads(delivery["payload"])
            except ValueError:
                entry = {}
            kind, item_id = mapping.notified_item(entry)
            if kind == "item" and item_id not in items:
                item = self.erp.get_item(item_id)
                if item is None:
                    notes[delivery["id"]] = f"item {item_id} is no longer in Business Central"
                else:
                    items[str(item.get("id"))] = item
            elif kind == "collection":
                since = _instant(entry.get("lastModifiedDateTime")) or start
                for item in self.erp.iter_items_modified(min(since, start), max(end, datetime.now(UTC))):
                    items.setdefault(str(item.get("id")), item)
            elif kind == "deleted":
                notes[delivery["id"]] = (f"item {item_id} was deleted in Business Central: ShipStation v1 cannot "
                                         "delete products (left as it is)")
            elif kind == "other":
                notes[delivery["id"]] = f"not an item notification ({entry.get('resource')!r})"
        for item in items.values():
            sku = str(item.get("number") or "")
            product = mapping.find_sku(self.shipstation.products_by_sku(sku), sku)
            if product is None:
                reason = f"SKU {sku} ({item.get('displayName')}) is not a ShipStation product: v1 cannot create it"
                outcome.problems[sku] = reason
                fulfilment.record(self.ledger, self.pipeline_id, "item", sku, "missing_sku", detail=reason)
                continue
            merged = mapping.merge_product(product, item)
            if merged is None:
                outcome.unchanged.append(sku)
                fulfilment.record(self.ledger, self.pipeline_id, "item", sku, "unchanged",
                                  document=str(product["productId"]))
                continue
            self.shipstation.update_product(merged)
            outcome.done.append(sku)
            fulfilment.record(self.ledger, self.pipeline_id, "item", sku, "pushed", document=str(product["productId"]))
        for delivery in deliveries:  # only now: a failed push leaves them pending for the next run
            self.ledger.inbox_done(delivery["id"], error=notes.get(delivery["id"]))
        return outcome

    def report_customers(self, start: datetime, end: datetime) -> Outcome:
        """The Business Central customers modified in ``[start, end)`` that ShipStation does not know (by username
        = customer number, or e-mail): recorded ``unknown_customer`` in the ledger and reported. Nothing is
        written: ShipStation v1 can only read customers (it makes them from imported orders, each carrying its own
        ship-to), so their ship-to details cannot be aligned from Business Central. ShipStation's customer list
        is read only when a Business Central customer changed (one call per 500 customers)."""
        outcome = Outcome()
        changed = list(self.erp.iter_customers_modified(start, end))
        if not changed:
            return outcome
        index = mapping.customer_index(list(self.shipstation.iter_customers()))
        for customer in changed:
            number = str(customer.get("number") or "")
            if mapping.knows_customer(index, customer):
                outcome.unchanged.append(number)
                fulfilment.record(self.ledger, self.pipeline_id, "customer", number, "known")
                continue
            reason = (f"customer {number} ({customer.get('displayName')}) is not a ShipStation customer: v1 cannot "
                      "create or update customers; it makes one from the first order naming "
                      f"{self.customer_field} {number}")
            outcome.problems[number] = reason
            fulfilment.record(self.ledger, self.pipeline_id, "customer", number, "unknown_customer", detail=reason)
        return outcome

    @property
    def erp_source(self) -> str:
        """The webhook inbox source of the ERP's notifications (its vendor name, e.g. ``business_central``)."""
        return str(self.erp.vendor)

    # -- orders back -------------------------------------------------------------------------------------------

    def collect(self, start: datetime, end: datetime) -> list[int]:
        """Order ids from the webhook inbox and the poll of ``[start, end)``."""
        ids: set[int] = set()
        for delivery in self.ledger.inbox_pending(SOURCE):
            payload = json.loads(delivery["payload"])
            try:
                body = self.shipstation.follow(payload["resource_url"])
            except ConfigurationError as exc:  # another host: never called with our credentials
                log.warning("webhook delivery %s: %s", delivery["id"], exc.message)
                self.ledger.inbox_done(delivery["id"], error=exc.message)
                continue
            ids.update(_order_ids(body.get("orders") or [], "orderId"))
            ids.update(_order_ids(body.get("shipments") or [], "orderId"))
            self.ledger.inbox_done(delivery["id"])
        for status in self.poll_statuses:
            ids.update(_order_ids(self.shipstation.iter_orders(start, end, status=status), "orderId"))
        ids.update(_order_ids(self.shipstation.iter_shipments(start, end), "orderId"))
        return sorted(ids)

    @property
    def poll_statuses(self) -> tuple[str, ...]:
        """The ``orderStatus`` values the poll asks ``/orders`` for (v1 takes one per call): ``shipped`` (orders
        marked shipped outside label creation, which ``/shipments`` leaves out), and the open statuses whose
        edits keep a draft up to date when ``book_open_orders`` is on. Cancelled and rejected orders are never
        read. One call (one page) each per run: 2 (``shipped`` + ``/shipments``) or 6 calls a run."""
        return (mapping.SHIPPED, *(sorted(mapping.OPEN_STATUSES) if self.book_open_orders else ()))

    def book(self, order_ids: Iterable[int]) -> Outcome:
        outcome = Outcome()
        for order_id in order_ids:
            order = self.shipstation.get_order(order_id)
            label = str(order.get("orderKey") or order.get("orderNumber") or order_id)
            try:
                state, document, detail = self.book_order(order)
            except RecordError as exc:
                outcome.problems[label] = exc.message
                fulfilment.record(self.ledger, self.pipeline_id, "order", label, "error", detail=exc.message)
                continue
            except ApiError as exc:
                if isinstance(exc, AuthenticationError) or exc.retryable or exc.status not in (400, 404, 409, 412):
                    raise
                message = f"Business Central refused ShipStation order {order.get('orderNumber')}: {exc.message}"
                outcome.problems[label] = message
                fulfilment.record(self.ledger, self.pipeline_id, "order", label, "error", detail=message)
                continue
            if state in ("skipped", "unchanged"):  # the ledger keeps what booked it
                outcome.unchanged.append(label)
                continue
            (outcome.done if state in ("booked", "draft") else outcome.unchanged).append(label)
            fulfilment.record(self.ledger, self.pipeline_id, "order", label, state, document=document, detail=detail)
        return outcome

    def _id(self, entity_set: str, number: str, what: str, field_name: str) -> str:
        if (entity_set, number) not in self._ids:
            record = self.erp.find_by_number(entity_set, number)
            self._ids[(entity_set, number)] = record["id"] if record else None
        found = self._ids[(entity_set, number)]
        if found is None:
            raise RecordError(f"{what} {number!r} is not in Business Central", field=field_name)
        return found

    def book_order(self, order: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """Book one order; returns ``(state, document number, detail)``.

        :raises RecordError: the order cannot be booked (named field).
        """
        status = str(order.get("orderStatus") or "")
        shipped = status == mapping.SHIPPED
        if not shipped and not (self.book_open_orders and status in mapping.OPEN_STATUSES):
            return "skipped", None, None
        key = mapping.order_key(order)
        existing = self.erp.find_document(self.entity_set, key)
        if existing is not None and existing.get("status") not in (None, "", "Draft"):
            return "unchanged", existing.get("number"), "already booked"
        number = order.get("orderNumber")
        customer_id = self._id("customers", mapping.customer_number(order, self.customer_field),
                               f"ShipStation order {number}: customer", self.customer_field)
        skus = {str(line.get("sku") or "").strip() for line in order.get("items") or []}
        known = {}
        for sku in sorted(s for s in skus if s):
            try:
                known[sku] = self._id("items", sku, "item", "sku")
            except RecordError:
                pass  # document_lines names the line
        lines = mapping.document_lines(order, known)
        detail = None
        if shipped:
            shipments = self.shipstation.shipments_of(order["orderId"])
            shipment = shipments[-1] if shipments else None
            lines.append({"lineType": "Comment", "description": mapping.tracking_line(shipment, order)})
            detail = (shipment or {}).get("trackingNumber")
        header = mapping.document_header(order, customer_id)
        if self.document != "sales_invoice":
            header.pop("invoiceDate", None)
        if existing is None:
            document = self.erp.create_document(self.entity_set, header, lines)
        else:
            changes = {k: v for k, v in header.items() if k != "customerId" and str(existing.get(k) or "") != v}
            document = self.erp.update_document(self.entity_set, existing, changes) if changes else existing
            old = existing.get(self.entity_set[:-1] + "Lines") or []
            if not mapping.same_lines(old, lines):
                self.erp.replace_lines(self.entity_set, existing["id"], old, lines)
        if shipped and self.document == "sales_invoice":
            self.erp.post_invoice(document["id"])
            posted = self.erp.find_document(self.entity_set, key) or document
            return "booked", posted.get("number"), detail
        return ("booked" if shipped else "draft"), document.get("number"), detail


def _order_ids(records: Iterable[dict[str, Any]], key: str) -> set[int]:
    ids = set()
    for record in records:
        try:
            ids.add(int(record[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return ids


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
