"""``ml-connector`` command line: key generation, secret rotation, ledger inspection and migration, and a
person's decisions on shipments (``shipments adopt|rebuy|retry``, audited with who and why)."""

from __future__ import annotations

import argparse
import getpass
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


def _who(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers): the decision must still say who made it
        return "unknown"


def _shipments(args: argparse.Namespace) -> int:
    from ml_connector.ledger import ShipmentState
    from ml_connector.service import DecisionRefused, ShipmentDecisions

    ledger = _ledger(args.ledger_url)
    if args.shipments_command == "list":
        states = {ShipmentState(s) for s in args.state} if args.state else None
        for row in ledger.list(args.pipeline, states):
            print(f"{row.order_number:<24} {row.state.value:<16} {','.join(row.tracking_numbers):<40} "
                  f"{row.error or ''}")
        return 0
    decisions = ShipmentDecisions(ledger, by=_who(args.by), via="cli")
    try:
        decision = decisions.decide(args.shipments_command, args.pipeline, args.order,
                                    tracking_numbers=getattr(args, "tracking_numbers", ()),
                                    reason=getattr(args, "reason", None))
    except DecisionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"{decision.pipeline} {decision.order_number}: {decision.state.value}: {decision.message}")
    return 0


def _add_shipments(sub) -> None:
    from ml_connector.ledger import ShipmentState

    shipments = sub.add_parser(
        "shipments", help="list a pipeline's shipments, or record a person's decision on one (audited)")
    commands = shipments.add_subparsers(dest="shipments_command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        parser.add_argument("pipeline", help="the pipeline (DAG id), e.g. business_central_ups")
        if name != "list":
            parser.add_argument("order", help="the ERP order number")
        parser.add_argument("--ledger-url", help="SQLAlchemy URL; default: the ml_connector_ledger connection")
        return parser

    listing = command("list", "print a pipeline's shipments (e.g. --state label_uncertain)")
    listing.add_argument("--state", action="append", choices=[s.value for s in ShipmentState],
                         help="only rows in this state (repeatable)")
    adopt = command("adopt", "record a label found by hand for an order (uncertain, or any order with no "
                             "label): it becomes labelled and the next run writes it back; nothing is bought")
    adopt.add_argument("tracking_numbers", nargs="+", metavar="TRACKING_NUMBER",
                       help="the label's tracking number(s), lead package first")
    adopt.add_argument("--reason", help="where it was found (kept in the audit trail)")
    rebuy = command("rebuy", "buy a new label on the next run for an uncertain order (it is looked up by reference "
                             "once more first); a label of the abandoned attempt that turns up later is voided")
    rebuy.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    retry = command("retry", "release a quarantined order after its data was fixed: the next run takes it again")
    retry.add_argument("--reason", help="what was fixed (kept in the audit trail)")
    for parser in (adopt, rebuy, retry):
        parser.add_argument("--by", help="who decides (default: the OS user)")


# -- exact-online authorize (Exact Online's authorization-code exchange) -----------------------------------------

def _add_exact_online(sub) -> None:
    exact = sub.add_parser("exact-online", help="Exact Online: authorize the app (first use, or after the refresh "
                                                "token was lost or expired)")
    commands = exact.add_subparsers(dest="exact_command", required=True)
    authorize = commands.add_parser(
        "authorize", help="complete the OAuth authorization-code exchange and store the new refresh token",
        description="Without --code: print the Exact Online sign-in URL; open it, sign in and allow the app, then "
                    "run again with --code <the code, or the whole redirect URL>. With --code: exchange it and "
                    "store the refresh token (encrypted) in the ledger, where every task takes it from.")
    authorize.add_argument("--conn-id", help="the Exact Online connection (default: the registry's default id)")
    authorize.add_argument("--code", help="the authorization code, or the whole URL Exact redirected to")
    authorize.add_argument("--redirect-uri", help="the app's redirect URI (default: the connection's "
                                                  "redirect_uri extra)")
    authorize.add_argument("--ledger-url", help="SQLAlchemy URL; default: the ml_connector_ledger connection")


def _exact_online(args: argparse.Namespace) -> int:
    from urllib.parse import parse_qs, urlencode, urlsplit

    from ml_connector.erp.exact_online.hook import ExactOnlineHook
    from ml_connector.errors import ConnectorError

    hook = ExactOnlineHook(args.conn_id or ExactOnlineHook.default_conn_name, ledger=_ledger(args.ledger_url))
    redirect = args.redirect_uri or hook.extra("redirect_uri")
    if not redirect:
        print("the connection has no redirect_uri extra: pass --redirect-uri (the app's redirect URI in the Exact "
              "App Center)", file=sys.stderr)
        return 1
    if not args.code:
        client_id, _ = hook.credentials()
        query = urlencode({"client_id": client_id, "redirect_uri": redirect, "response_type": "code",
                           "force_login": "0"})
        print(f"open {hook.base_url}/api/oauth2/auth?{query}\nsign in, allow the app, then run:\n"
              f"  ml-connector exact-online authorize --conn-id {hook.conn_id} --code '<the redirect URL>'")
        return 0
    code = args.code.strip()
    if "://" in code:  # the whole redirect URL was pasted
        code = (parse_qs(urlsplit(code).query).get("code") or [""])[0]
    try:
        hook.exchange_code(code, redirect)
    except ConnectorError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"connection {hook.conn_id}: authorized; the new refresh token is stored (encrypted) in {hook.ledger}")
    return 0


def _costs(args: argparse.Namespace) -> int:
    from datetime import date

    from ml_connector.ledger.costs import shipment_costs, write_csv

    try:
        first, last = date.fromisoformat(args.first_day), date.fromisoformat(args.last_day)
    except ValueError as exc:
        print(f"--from/--to must be days as YYYY-MM-DD ({exc})", file=sys.stderr)
        return 2
    if last < first:
        print("--to is before --from", file=sys.stderr)
        return 2
    write_csv(shipment_costs(_ledger(args.ledger_url), args.pipeline, first, last), sys.stdout)
    return 0


def _add_costs(sub) -> None:
    costs = sub.add_parser("costs", help="print a pipeline's shipment costs (labels bought on UTC days FROM..TO, "
                                         "inclusive) as CSV for finance")
    costs.add_argument("pipeline", help="the pipeline (DAG id), e.g. syspro_ups")
    costs.add_argument("--from", dest="first_day", required=True, metavar="DAY", help="first day, YYYY-MM-DD")
    costs.add_argument("--to", dest="last_day", required=True, metavar="DAY", help="last day, YYYY-MM-DD")
    costs.add_argument("--ledger-url", help="SQLAlchemy URL; default: the ml_connector_ledger connection")


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
    _add_shipments(sub)
    _add_exact_online(sub)
    _add_costs(sub)
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
    if args.command == "shipments":
        return _shipments(args)
    if args.command == "exact-online":
        return _exact_online(args)
    if args.command == "costs":
        return _costs(args)
    if args.command == "ledger":
        rows = _ledger(args.ledger_url).list(args.pipeline)
        for row in rows:
            print(f"{row.order_number:<24} {row.state.value:<16} {','.join(row.tracking_numbers):<40} "
                  f"{row.error or ''}")
        return 0
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
