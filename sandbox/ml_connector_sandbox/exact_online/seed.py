"""What the Exact Online sandbox serves: one division of a German retailer (ML Outdoor GmbH, Berlin) with its
items, addresses, sales orders and goods deliveries: domestic, EU, Swiss and US deliveries plus broken ones.

Delivery times are given as minutes before the sandbox's start (or last reset).
"""

from __future__ import annotations

from typing import Any

DIVISION = 123456

ITEMS: list[dict[str, Any]] = [
    {"ID": "a1000000-0000-4000-8000-000000000001", "Code": "BOOT", "Description": "Hiking boots",
     "GrossWeight": 1.4, "NetWeight": 1.2, "StatisticalCode": "64039113"},
    {"ID": "a1000000-0000-4000-8000-000000000002", "Code": "JACKET", "Description": "Rain jacket",
     "GrossWeight": 0.8, "NetWeight": 0.7, "StatisticalCode": "62019300"},
    {"ID": "a1000000-0000-4000-8000-000000000003", "Code": "TENT", "Description": "Two-person tent",
     "GrossWeight": None, "NetWeight": None, "StatisticalCode": "63062200"},  # no weight anywhere: broken
    {"ID": "a1000000-0000-4000-8000-000000000004", "Code": "SOCKS", "Description": "Wool socks",
     "GrossWeight": 0.1, "NetWeight": 0.1, "StatisticalCode": None},
]

ADDRESSES: list[dict[str, Any]] = [
    {"ID": "b2000000-0000-4000-8000-000000000001", "AccountName": "Bergwelt Hamburg", "ContactName": "Jana Kühn",
     "AddressLine1": "Mönckebergstraße 7", "City": "Hamburg", "Postcode": "20095", "Country": "DE",
     "Phone": "+49 40 123456"},
    {"ID": "b2000000-0000-4000-8000-000000000002", "AccountName": "Montagne Paris", "ContactName": "Luc Martin",
     "AddressLine1": "12 Rue de Rivoli", "City": "Paris", "Postcode": "75004", "Country": "FR"},
    {"ID": "b2000000-0000-4000-8000-000000000003", "AccountName": "Bergsport Zürich AG", "ContactName": "Urs Meier",
     "AddressLine1": "Bahnhofstrasse 1", "City": "Zürich", "Postcode": "8001", "Country": "CH",
     "Phone": "+41 44 1234567"},
    {"ID": "b2000000-0000-4000-8000-000000000004", "AccountName": "Trailhead Outfitters Inc", "ContactName": "Amy Fox",
     "AddressLine1": "350 5th Ave", "City": "New York", "State": "NY", "Postcode": "10118", "Country": "US",
     "Phone": "212 555 0100"},
    {"ID": "b2000000-0000-4000-8000-000000000005", "AccountName": "Gipfel Basel", "ContactName": "Eva Roth",
     "AddressLine1": "Freie Strasse 3", "City": "Basel", "Postcode": "4001", "Country": "CH"},
]

#: sales orders: number -> currency and line prices (line ids are "so-<number>-<n>")
SALES_ORDERS: dict[int, dict[str, Any]] = {
    9001: {"Currency": "EUR", "prices": [89.9, 7.5]},
    9002: {"Currency": "EUR", "prices": [129.0]},
    9003: {"Currency": "EUR", "prices": [89.9, 129.0]},
    9004: {"Currency": "USD", "prices": [99.0]},
    9005: {"Currency": "EUR", "prices": [249.0]},
    9006: {"Currency": "EUR", "prices": [89.9]},
    9007: {"Currency": "EUR", "prices": [0.0]},  # no price on the line: no commercial invoice possible
    9008: {"Currency": "EUR", "prices": [89.9]},
    9009: {"Currency": "EUR", "prices": [89.9]},
}

#: goods deliveries: number, address, shipping method, lines as (item code, quantity), minutes ago
DELIVERIES: list[dict[str, Any]] = [
    {"number": 5001, "address": 1, "method": ("UPS-STD", "UPS Standard"), "lines": [("BOOT", 1), ("SOCKS", 2)],
     "order": 9001, "minutes_ago": 30},  # domestic
    {"number": 5002, "address": 2, "method": ("UPS-STD", "UPS Standard"), "lines": [("JACKET", 2)],
     "order": 9002, "minutes_ago": 40},  # EU
    {"number": 5003, "address": 3, "method": ("UPS-EXP", "UPS Express"), "lines": [("BOOT", 2), ("JACKET", 1)],
     "order": 9003, "minutes_ago": 50},  # Switzerland: commercial invoice
    {"number": 5004, "address": 4, "method": ("UPS-SAV", "UPS Saver"), "lines": [("BOOT", 1)],
     "order": 9004, "minutes_ago": 60},  # US: commercial invoice
    {"number": 5005, "address": 1, "method": ("UPS-STD", "UPS Standard"), "lines": [("TENT", 1)],
     "order": 9005, "minutes_ago": 70},  # broken: the item has no weight
    {"number": 5006, "address": None, "method": ("UPS-STD", "UPS Standard"), "lines": [("BOOT", 1)],
     "order": 9006, "minutes_ago": 80},  # broken: no delivery address
    {"number": 5007, "address": 5, "method": ("UPS-EXP", "UPS Express"), "lines": [("BOOT", 1)],
     "order": 9007, "minutes_ago": 90},  # broken: Swiss, but the sales order line has no price
    {"number": 5008, "address": 1, "method": ("PIGEON", "Carrier pigeon"), "lines": [("BOOT", 1)],
     "order": 9008, "minutes_ago": 100},  # broken: a shipping method UPS does not have
    {"number": 5009, "address": 1, "method": ("UPS-STD", "UPS Standard"), "lines": [("BOOT", 1)],
     "order": 9009, "minutes_ago": 110, "tracking": "1ZOTHERCARRIER01"},  # shipped already: skipped
]

GOOD = ["5001", "5002", "5003", "5004"]
BROKEN = {"5005": "Items.GrossWeight", "5006": "DeliveryAddress", "5007": "lines[0].unit_value",
          "5008": "ship_method"}
