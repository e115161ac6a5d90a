"""ShipStation: items out as products by SKU, orders back into Business Central (see ``docs/vendors/shipstation.md``)."""
