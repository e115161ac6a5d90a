"""When an ERP source reads the values a commercial invoice needs, for ERPs whose shipping document carries no
prices (an Exact Online goods delivery, an Acumatica shipment): the line prices and currency live on the sales
order, one more read per sales order. The carrier decides whether the invoice is needed
(:mod:`ml_connector.carriers.ups`); the source only decides whether to read the values, with the vendor setting
``customs_values``:

* ``foreign`` (default): for shipments to another country than the ship-from address's;
* ``always``: for every shipment (also domestic ones: more reads, nothing else changes);
* ``never``: never (a shipment leaving the customs area is then quarantined for its missing unit values).
"""

from __future__ import annotations

from typing import Literal

from ml_connector.models import Address

#: the values of the ``customs_values`` setting of ERP vendors that read prices from the sales order
CustomsValues = Literal["foreign", "always", "never"]


def wants_customs_values(mode: CustomsValues, ship_from: Address | None, ship_to_country: str | None) -> bool:
    """Whether to read the customs values (prices, currency, origin) of a shipment to ``ship_to_country``.

    :param mode: the ``customs_values`` setting.
    :param ship_from: the pipeline's ship-from address (``foreign`` compares its country; unset: every shipment
        with a country counts as foreign, so nothing a commercial invoice needs is left unread).
    :param ship_to_country: the ship-to country as the ERP holds it (empty: not foreign).
    """
    if mode != "foreign":
        return mode == "always"
    country = (ship_to_country or "").strip().upper()
    origin = ship_from.country.upper() if ship_from is not None else None
    return bool(country) and country != origin
