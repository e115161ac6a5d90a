"""The JSON of the stored records as API v2.0 and the write-back page serve them (every read goes through here).

Shapes follow ``docs/vendors/erp-and-shipstation.md`` section 1 (v2.0 page sources): companies, companyInformation,
shipmentMethods, items, salesOrders with salesOrderLines, and the ``salesOrderShipping`` page of
``ml_connector/erp/business_central/al``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ml_connector_sandbox.business_central.odata import iso, make_etag
from ml_connector_sandbox.business_central.state import BusinessCentralState, StoredOrder

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
_ID_NAMESPACE = uuid.UUID("0d7f2f5e-3c1b-4a7e-9f3a-6b2d8c4e1a90")  # derives stable line/unit ids


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, ":".join(parts)))


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


class EntityBuilder:
    """Builds the v2.0 / write-back JSON of the stored records (all reads go through here)."""

    def __init__(self, state: BusinessCentralState) -> None:
        self.state = state

    def company(self) -> dict[str, Any]:
        c = self.state.company
        created = iso(self.state.started_at - timedelta(days=400))
        return {
            "id": c["id"], "systemVersion": c["systemVersion"], "timestamp": 8114, "name": c["name"],
            "displayName": c["displayName"], "businessProfileId": c.get("businessProfileId", ""),
            "systemCreatedAt": created, "systemCreatedBy": EMPTY_GUID,
            "systemModifiedAt": created, "systemModifiedBy": EMPTY_GUID,
        }

    def company_information(self) -> dict[str, Any]:
        info = self.state.company_information
        return {"@odata.etag": make_etag("CI", info["id"], 1), **info,
                "lastModifiedDateTime": iso(self.state.started_at - timedelta(days=30))}

    def shipment_method(self, method: Mapping[str, Any]) -> dict[str, Any]:
        return {"@odata.etag": make_etag("SM", method["id"], 1), "id": method["id"], "code": method["code"],
                "displayName": method["displayName"],
                "lastModifiedDateTime": iso(self.state.started_at - timedelta(days=90))}

    def item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        price = Decimal(str(item["unitPrice"]))
        # No weight property: API v2.0 items have none (the connector's weight rule documents why).
        return {
            "@odata.etag": make_etag("IT", item["id"], 1), "id": item["id"], "number": item["number"],
            "displayName": item["displayName"], "displayName2": "", "type": "Inventory",
            "itemCategoryId": EMPTY_GUID, "itemCategoryCode": "FURNITURE", "blocked": False, "gtin": "",
            "inventory": 100, "unitPrice": _money(price), "priceIncludesTax": False,
            "unitCost": _money(price * Decimal("0.62")), "taxGroupId": EMPTY_GUID, "taxGroupCode": "FURNITURE",
            "baseUnitOfMeasureId": _stable_id("uom", "PCS"), "baseUnitOfMeasureCode": "PCS",
            "generalProductPostingGroupId": EMPTY_GUID, "generalProductPostingGroupCode": "RETAIL",
            "inventoryPostingGroupId": EMPTY_GUID, "inventoryPostingGroupCode": "RESALE",
            "lastModifiedDateTime": iso(self.state.item_modified.get(item["number"])
                                        or self.state.started_at - timedelta(days=60)),
        }

    def _order_date(self, order: StoredOrder) -> str:
        """The day before the seed's modification time; fixed, so touching an order does not move it."""
        if order.seed.get("orderDate"):  # an order created through the API
            return str(order.seed["orderDate"])
        created = self.state.started_at - timedelta(minutes=order.seed["modified_minutes_ago"], days=1)
        return created.date().isoformat()

    def _lines(self, order: StoredOrder) -> list[dict[str, Any]]:
        result = []
        order_date = self._order_date(order)
        for index, line in enumerate(order.seed["lines"], start=1):
            sequence = int(line.get("sequence") or index * 10000)
            line_type = line.get("lineType", "Item")
            item = self.state.items.get(line.get("item", "")) if line_type == "Item" else None
            quantity = Decimal(str(line.get("quantity", 0)))
            shipped = Decimal(str(line.get("shippedQuantity", 0)))
            price = Decimal(str(line.get("unitPrice", item["unitPrice"] if item else 0)))
            amount = quantity * price
            result.append({
                "@odata.etag": make_etag("SL", f"{order.id}:{sequence}", order.version),
                "id": _stable_id(order.id, str(sequence)),
                "documentId": order.id,
                "sequence": sequence,
                "itemId": item["id"] if item else EMPTY_GUID,
                "accountId": _stable_id("gl", line["account"]) if line_type == "Account" else EMPTY_GUID,
                "lineType": line_type,
                "lineObjectNumber": item["number"] if item else line.get("account", ""),
                "description": line.get("description", item["displayName"] if item else ""),
                "description2": "",
                "unitOfMeasureId": _stable_id("uom", "PCS") if item else EMPTY_GUID,
                "unitOfMeasureCode": "PCS" if item else "",
                "quantity": float(quantity),
                "unitPrice": _money(price),
                "discountAmount": 0, "discountPercent": 0, "discountAppliedBeforeTax": False,
                "amountExcludingTax": _money(amount), "taxCode": "FURNITURE" if item else "",
                "taxPercent": 0, "totalTaxAmount": 0, "amountIncludingTax": _money(amount),
                "invoiceDiscountAllocation": 0, "netAmount": _money(amount), "netTaxAmount": 0,
                "netAmountIncludingTax": _money(amount),
                "shipmentDate": order_date,
                "shippedQuantity": float(shipped),
                "invoicedQuantity": float(shipped),
                "invoiceQuantity": float(quantity - shipped),
                "shipQuantity": float(quantity - shipped),
                "itemVariantId": EMPTY_GUID, "locationId": EMPTY_GUID,
            })
        return result

    def sales_order(self, order: StoredOrder, expand: set[str] = frozenset()) -> dict[str, Any]:
        seed = order.seed
        ship_to = seed["shipTo"]
        customer = self.state.customers.get(seed["customer"], {"id": EMPTY_GUID, "number": seed["customer"],
                                                               "name": ship_to["name"]})
        method = self.state.shipment_methods.get(seed.get("shipmentMethod") or "")
        lines = self._lines(order)
        total = sum((Decimal(str(line["amountExcludingTax"])) for line in lines), Decimal(0))
        fully_shipped = all(line["shipQuantity"] <= 0 for line in lines if line["lineType"] == "Item")
        address = {
            "AddressLine1": ship_to["addressLine1"], "AddressLine2": ship_to["addressLine2"],
            "City": ship_to["city"], "Country": ship_to["country"], "State": ship_to["state"],
            "PostCode": ship_to["postCode"],
        }
        doc: dict[str, Any] = {
            "@odata.etag": make_etag("SO", order.id, order.version),
            "id": order.id,
            "number": order.number,
            "externalDocumentNumber": seed.get("externalDocumentNumber", ""),
            "orderDate": self._order_date(order),
            "postingDate": self._order_date(order),
            "customerId": customer["id"], "customerNumber": customer["number"], "customerName": customer["name"],
            "billToName": customer["name"], "billToCustomerId": customer["id"],
            "billToCustomerNumber": customer["number"],
            "shipToName": ship_to["name"], "shipToContact": ship_to["contact"],
            **{f"sellTo{k}": v for k, v in address.items()},
            **{f"billTo{k}": v for k, v in address.items()},
            **{f"shipTo{k}": v for k, v in address.items()},
            "shortcutDimension1Code": "", "shortcutDimension2Code": "",
            "currencyId": EMPTY_GUID, "currencyCode": "USD", "pricesIncludeTax": False,
            "paymentTermsId": EMPTY_GUID,
            "shipmentMethodId": method["id"] if method else EMPTY_GUID,
            "salesperson": "", "partialShipping": True, "requestedDeliveryDate": "0001-01-01",
            "discountAmount": 0, "discountAppliedBeforeTax": True,
            "totalAmountExcludingTax": _money(total), "totalTaxAmount": 0,
            "totalAmountIncludingTax": _money(total),
            "fullyShipped": fully_shipped,
            "status": order.status,
            "lastModifiedDateTime": iso(order.modified_at),
            "phoneNumber": seed.get("phoneNumber", ""),
            "email": seed.get("email", ""),
        }
        if "salesOrderLines" in expand:
            doc["salesOrderLines"] = lines
        if "shipmentMethod" in expand:
            doc["shipmentMethod"] = self.shipment_method(method) if method else None
        if "customer" in expand:
            doc["customer"] = {"id": customer["id"], "number": customer["number"],
                               "displayName": customer["name"]}
        return doc

    def shipping(self, order: StoredOrder) -> dict[str, Any]:
        """The write-back page's entity (``salesOrderShipping``); its etag differs from salesOrders'."""
        return {
            "@odata.etag": make_etag("SH", order.id, order.version),
            "id": order.id,
            "number": order.number,
            "packageTrackingNo": order.package_tracking_no,
            "shippingAgentCode": order.shipping_agent_code,
            "shippingAgentServiceCode": order.shipping_agent_service_code,
            "mlShipmentStatus": order.ml_shipment_status,
            "mlLastTrackingEvent": order.ml_last_tracking_event,
            # A blank BC DateTime serialises as the minimum value, not null.
            "mlDeliveredAt": iso(order.ml_delivered_at) if order.ml_delivered_at else "0001-01-01T00:00:00Z",
            "lastModifiedDateTime": iso(order.modified_at),
        }

