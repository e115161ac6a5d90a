"""``ml-connector`` command line: key generation, secret rotation, ledger inspection and migration."""

from __future__ import annotations

import argparse
import sys

from cryptography.fernet import Fernet


def _ledger(url: str | None, *, create_schema: bool = True):
    from ml_connector.ledger import Ledger, resolve_ledger_url

    return Ledger(url or resolve_ledger_url(), create_schema=create_schema)


def _db(command: str, url: str | None) -> int:
    from ml_connector.ledger import migrations
    from ml_connector.ledger.engine import upgrade_schema

    ledger = _ledger(url, create_schema=False)
    head = migrations.head_revision()
    if command == "upgrade":
        before, after = upgrade_schema(ledger.engine)
        if before == after:
            print(f"{ledger}: already at {after} (head)")
        else:
            print(f"{ledger}: upgraded from {before or 'an empty database'} to {after} (head)")
        return 0
    current = ledger.current_revision()
    if current == head:
        print(f"{ledger}: {current} (head)")
    elif current is not None and not migrations.is_known(current):
        print(f"{ledger}: {current}, newer than this release's head {head}")
    elif current is None:
        with ledger.read() as conn:
            unversioned = migrations.has_unversioned_tables(conn)
        what = "tables of release 0.1.0 without a version" if unversioned else "no ledger tables yet"
        print(f"{ledger}: {what}; `ml-connector db upgrade` (or the first task) brings it to {head}")
    else:
        print(f"{ledger}: {current}, behind head {head}; `ml-connector db upgrade` (or the first task) upgrades it")
    return 0


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
    db = sub.add_parser("db", help="the ledger's schema revision (migrations also run on a ledger's first use)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "bring the ledger schema to the newest revision"),
                       ("current", "print the ledger's schema revision and whether it is the newest")):
        db_sub.add_parser(name, help=text).add_argument(
            "--ledger-url", help="SQLAlchemy URL; default: the ml_connector_ledger connection")
    args = parser.parse_args(argv)

    if args.command == "generate-key":
        print(Fernet.generate_key().decode())
        return 0
    if args.command == "rotate-secrets":
        from ml_connector.secrets import SecretStore

        count = SecretStore(_ledger(args.ledger_url)).rotate()
        print(f"re-encrypted {count} secret(s) with the first key")
        return 0
    if args.command == "db":
        return _db(args.db_command, args.ledger_url)
    if args.command == "ledger":
        rows = _ledger(args.ledger_url).list(args.pipeline)
        for row in rows:
            print(f"{row.order_number:<24} {row.state.value:<16} {','.join(row.tracking_numbers):<40} "
                  f"{row.error or ''}")
        return 0
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
