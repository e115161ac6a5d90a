"""Exact Online webhook notifications as Exact sends them: ``{"Content": {...}, "HashCode": "<HEX>"}``, the hash
being the upper-case hex HMAC-SHA256 of the raw ``Content`` text keyed with the app's webhook secret."""

from __future__ import annotations

import hashlib
import hmac
import json

from ml_connector_sandbox.exact_online import seed
from ml_connector_sandbox.exact_online.state import CLIENT_ID


def notification(key: str, *, secret: str, base: str, topic: str = "GoodsDeliveries", action: str = "Update") -> bytes:
    content = json.dumps({"Topic": topic, "ClientId": CLIENT_ID, "Division": seed.DIVISION, "Action": action,
                          "Key": key,
                          "ExactOnlineEndpoint": f"{base}/api/v1/{seed.DIVISION}/salesorder/{topic}(guid'{key}')"},
                         separators=(",", ":"))
    digest = hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest().upper()
    return ('{"Content":' + content + ',"HashCode":"' + digest + '"}').encode()
