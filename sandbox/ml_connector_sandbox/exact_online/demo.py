"""``python -m ml_connector_sandbox.exact_online.demo --sandbox-ports FILE --into-interval-ending ISO``: move the
sandbox's seeded goods deliveries into the few minutes before ISO (``make demo``), through the control endpoint."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_connector_sandbox.exact_online.demo")
    parser.add_argument("--sandbox-ports", required=True)
    parser.add_argument("--into-interval-ending", required=True, metavar="ISO")
    args = parser.parse_args(argv)
    url = json.loads(Path(args.sandbox_ports).read_text())["exact_online"].rstrip("/")
    end = datetime.fromisoformat(args.into_interval_ending.replace("Z", "+00:00"))
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    answer = requests.post(f"{url}/_sandbox/exact_online/touch",
                           json={"modified_at": (end - timedelta(minutes=2)).isoformat()}, timeout=10)
    answer.raise_for_status()
    print(f"placed goods deliveries {', '.join(answer.json()['touched'])} before {end.isoformat()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
