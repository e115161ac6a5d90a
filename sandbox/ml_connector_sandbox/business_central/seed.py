"""The company the Business Central sandbox serves, read from ``seed.json`` next to this module.

One tenant (``tenant_id``), one environment, one company (CRONUS USA, Inc.) with its company information,
shipment methods, shipping agents and their services, items, customers and sales orders. Order times are
given as ``modified_minutes_ago`` (relative to the sandbox's start or last reset), so every reset starts a
fresh timeline: the released orders fall into the last few hours, ``S-ORD101011`` three days back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED_PATH = Path(__file__).with_name("seed.json")


def load_seed(path: Path = SEED_PATH) -> dict[str, Any]:
    """The parsed seed document (a fresh copy on every call: the state mutates what it loads)."""
    return json.loads(path.read_text(encoding="utf-8"))
