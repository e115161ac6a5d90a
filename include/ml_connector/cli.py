"""``ml-connector`` command line: key generation, secret rotation and ledger inspection."""

from __future__ import annotations

import argparse
import sys

from cryptography.fernet import Fernet


def _ledger(url: str | None):
    from ml_connector.ledger import Ledger

    return Ledger(url) if url else Ledger.from_airflow()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-connector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate-key", help="print a new Fernet key for ML_CONNECTOR_FERNET_KEYS")
    rotate = sub.add_parser(
        "rotate-secrets",
        help="re-encrypt every stored secret with the first key of ML_CONNECTOR_FERNET_KEYS "
             "(put the new key first, keep the old ones after it until this has run)")
    rotate.add_argument("--ledger-url", help="SQLAlchemy URL; default: the ml_connector_ledger connection")
    show = sub.add_parser("ledger", help="print the ledger rows of a pipeline with their state and last error")
    show.add_argument("pipeline")
    show.add_argument("--ledger-url")
    args = parser.parse_args(argv)

    if args.command == "generate-key":
        print(Fernet.generate_key().decode())
        return 0
    if args.command == "rotate-secrets":
        from ml_connector.secrets import SecretStore

        count = SecretStore(_ledger(args.ledger_url)).rotate()
        print(f"re-encrypted {count} secret(s) with the first key")
        return 0
    if args.command == "ledger":
        rows = _ledger(args.ledger_url).list(args.pipeline)
        for row in rows:
            print(f"{row.order_number:<24} {row.state.value:<16} {','.join(row.tracking_numbers):<40} "
                  f"{row.error or ''}")
        return 0
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
