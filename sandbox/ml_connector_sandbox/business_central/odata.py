"""OData as Business Central speaks it: value formats and etags, ``$filter``, ``$select``, and server-driven paging.

Generic over entity sets: the routers (:mod:`.companies`, :mod:`.sales_orders`, :mod:`.writeback`) pass the
documents, the properties ``$filter`` may name (:class:`FilterField`) and the sort key.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ml_connector_sandbox.business_central.errors import bad_request, method_not_allowed
from ml_connector_sandbox.common import SandboxState

# -- formatting -----------------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    """BC's Edm.DateTimeOffset as OData writes it: UTC, ``Z``, fraction without trailing zeros
    (``2026-11-01T10:15:30.12Z``; none at all on a whole second, like ``0001-01-01T00:00:00Z``)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def ms(value: datetime) -> datetime:
    """Truncate to milliseconds, the precision BC stores and returns."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def make_etag(kind: str, key: str, version: int) -> str:
    """A weak etag shaped like BC's (``W/"JzE..."``: base64 of ``'<len>;<token>;00;'``)."""
    token = base64.b64encode(f"{kind}:{key}:{version}".encode()).decode().rstrip("=")
    inner = f"'{len(token)};{token};00;'"
    return f'W/"{base64.b64encode(inner.encode()).decode()}"'


ETAG_SYNTAX = re.compile(r'^W/"[A-Za-z0-9+/]+=*"$')


# -- $filter ------------------------------------------------------------------------------------------

_EDM = {"string": "Edm.String", "datetime": "Edm.DateTimeOffset", "date": "Edm.Date", "guid": "Edm.Guid",
        "number": "Edm.Decimal", "bool": "Edm.Boolean"}
_OPERATORS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
              "lt": "LessThan", "le": "LessThanOrEqual"}
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[,/])
""", re.VERBOSE)

Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class FilterField:
    """A property ``$filter`` may name: its type, and for enums the values BC accepts."""

    kind: str
    values: tuple[str, ...] = ()


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise bad_request(f"Syntax error at position {pos} in '{text}'.")
        pos = match.end()
        if match.lastgroup != "ws":
            tokens.append((match.lastgroup, match.group()))
    return tokens


def _literal(kind: str, text: str, entity: str) -> tuple[str, Any]:
    """Convert a literal token to (Edm kind, Python value)."""
    if kind == "string":
        return "string", text[1:-1].replace("''", "'")
    if kind == "datetime":
        fraction = re.search(r"\.(\d+)", text)
        if fraction and len(fraction.group(1)) > 6:  # BC allows 7 digits; Python 6
            text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
        return "datetime", datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind == "date":
        return "date", date.fromisoformat(text)
    if kind == "guid":
        return "guid", text.lower()
    if kind == "number":
        return "number", Decimal(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return "bool", lowered == "true"
    if kind == "ident":  # OData reads a bare word as a property: 'Open' unquoted is not a value
        raise bad_request(f"Could not find a property named '{text}' on type 'Microsoft.NAV.{entity}'.")
    raise bad_request(f"Syntax error: '{text}' is not a literal.")


def parse_filter(text: str, fields: Mapping[str, FilterField], entity: str) -> Predicate:
    """Compile the OData ``$filter`` subset BC clients use: ``field op literal`` joined by and/or, brackets.

    Anything else (functions, ``not``, arithmetic, unknown properties, mismatched types) is a 400, so
    that a client bug such as a quoted datetime fails here as it fails against BC.
    """
    tokens = _tokenize(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise bad_request(f"Syntax error: unexpected end of '$filter={text}'.")
        pos += 1
        return tokens[pos - 1]

    def or_expr() -> Predicate:
        parts = [and_expr()]
        while (tok := peek()) and tok[0] == "ident" and tok[1] == "or":
            take()
            parts.append(and_expr())
        return parts[0] if len(parts) == 1 else (lambda rec: any(p(rec) for p in parts))

    def and_expr() -> Predicate:
        parts = [primary()]
        while (tok := peek()) and tok[0] == "ident" and tok[1] == "and":
            take()
            parts.append(primary())
        return parts[0] if len(parts) == 1 else (lambda rec: all(p(rec) for p in parts))

    def primary() -> Predicate:
        kind, value = take()
        if kind == "open":
            inner = or_expr()
            if take()[0] != "close":
                raise bad_request(f"Syntax error: ')' expected in '$filter={text}'.")
            return inner
        if kind != "ident":
            raise bad_request(f"Syntax error: a property name was expected, found '{value}'.")
        if value == "not":
            raise bad_request("The sandbox supports only comparisons joined with and/or; 'not' is not supported.")
        if (nxt := peek()) and nxt[0] == "open":
            raise bad_request(f"The sandbox supports only comparisons joined with and/or; "
                              f"function '{value}' is not supported.")
        if value not in fields:
            raise bad_request(f"Could not find a property named '{value}' on type 'Microsoft.NAV.{entity}'.")
        spec = fields[value]
        op_kind, op = take()
        if op_kind != "ident" or op not in _OPERATORS:
            raise bad_request(f"Syntax error: comparison operator expected after '{value}', found '{op}'.")
        lit_kind, lit_text = take()
        literal_type, literal = _literal(lit_kind, lit_text, entity)
        if literal_type != spec.kind:
            raise bad_request(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM[spec.kind]}' and '{_EDM[literal_type]}' for operator kind '{_OPERATORS[op]}'.")
        if spec.values and literal not in spec.values:
            raise bad_request(f"The value '{literal}' is not valid for property '{value}'. "
                              f"Valid values: {', '.join(spec.values)}.")
        return _comparison(value, op, literal, spec.kind)

    predicate = or_expr()
    if pos != len(tokens):
        raise bad_request(f"Syntax error at '{tokens[pos][1]}' in '$filter={text}'.")
    return predicate


def _comparison(name: str, op: str, literal: Any, kind: str) -> Predicate:
    convert: Callable[[Any], Any] = {
        "datetime": lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
        "date": date.fromisoformat,
        "guid": lambda v: v.lower(),
        "number": lambda v: Decimal(str(v)),
    }.get(kind, lambda v: v)

    def test(record: Mapping[str, Any]) -> bool:
        value = record.get(name)
        if value is None:
            return op == "ne"
        value = convert(value)
        return {"eq": value == literal, "ne": value != literal, "gt": value > literal,
                "ge": value >= literal, "lt": value < literal, "le": value <= literal}[op]
    return test


# -- query options and responses ------------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON answer with BC's ``OData-Version: 4.0`` header."""
    return JSONResponse(body, status_code=status, headers={"OData-Version": "4.0", **(headers or {})})


def entity_key(raw: str | None) -> str | None:
    """An entity key from ``(...)``: BC takes bare GUIDs; quotes are tolerated."""
    if raw is None:
        return None
    return raw.strip().strip("'").lower()


def context_root(request: Request, api_root: str) -> str:
    """``{base}/v2.0/{tenant}/{environment}/api/{api_root}/$metadata``: the ``@odata.context`` prefix."""
    return f"{str(request.base_url).rstrip('/')}{request.url.path.split('/api/')[0]}/api/{api_root}/$metadata"


def _page_size(request: Request, state: SandboxState) -> tuple[int, dict[str, str]]:
    """Server page size, lowered by ``Prefer: odata.maxpagesize=N`` (answered with Preference-Applied)."""
    size = int(state.knob("page_size"))
    for preference in request.headers.get("prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit() and int(value) > 0:
            size = min(size, int(value))
            return size, {"Preference-Applied": f"odata.maxpagesize={size}"}
    return size, {}


def _int_option(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw}' for {name} query option found. "
                          f"The {name} query option requires a non-negative integer value.")
    return int(raw)


def _encode_skiptoken(after: str, remaining: int | None) -> str:
    raw = json.dumps({"after": after, "left": remaining}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_skiptoken(token: str) -> tuple[str, int | None]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(data["after"]), data["left"]
    except (ValueError, KeyError, TypeError):
        raise bad_request(f"The skip token value '{token}' is invalid.") from None


def select_fields(doc: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """``$select``: keep the listed properties (and the ``@odata.*`` annotations)."""
    if not select:
        return doc
    return {k: v for k, v in doc.items() if k.startswith("@odata.") or k in select}


def select_option(raw: str | None) -> list[str] | None:
    """The ``$select`` query option as a list of property names (None when absent)."""
    if not raw:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def collection(request: Request, state: SandboxState, context: str, docs: list[dict[str, Any]],
               fields: Mapping[str, FilterField], entity: str, *, sort_key: str,
               select: list[str] | None = None, counter: str | None = None) -> Response:
    """Filter, order (by ``sort_key``, like BC's primary key) and page a collection.

    The ``$skiptoken`` is key-based (the last key served), as BC's are: a record modified between two
    page requests neither repeats nor shifts the rest.
    """
    params = request.query_params
    unsupported = [name for name in params if name.startswith("$") and name not in
                   ("$filter", "$expand", "$select", "$top", "$skip", "$count", "$skiptoken")]
    if unsupported:
        raise bad_request(f"The sandbox does not implement the query option(s) {', '.join(unsupported)}.")
    if params.get("$filter"):
        predicate = parse_filter(params["$filter"], fields, entity)
        docs = [d for d in docs if predicate(d)]
    docs.sort(key=lambda d: d[sort_key])
    count = len(docs)
    token = params.get("$skiptoken")
    if token:
        after, remaining = _decode_skiptoken(token)
        docs = [d for d in docs if d[sort_key] > after]
    else:
        skip = _int_option(params, "$skip") or 0
        remaining = _int_option(params, "$top")
        docs = docs[skip:]
    if remaining is not None:
        docs = docs[:remaining]
    size, headers = _page_size(request, state)
    page, more = docs[:size], len(docs) > size
    body: dict[str, Any] = {"@odata.context": context}
    if params.get("$count", "").lower() == "true":
        body["@odata.count"] = count
    body["value"] = [select_fields(d, select) for d in page]
    if more:
        left = None if remaining is None else remaining - len(page)
        query = [(k, v) for k, v in params.multi_items() if k not in ("$skiptoken", "$top", "$skip")]
        query.append(("$skiptoken", _encode_skiptoken(page[-1][sort_key], left)))
        body["@odata.nextLink"] = str(request.url.replace(query=urlencode(query, quote_via=quote, safe="$,'()")))
    if counter:
        state.counters[counter] += 1
    return json_response(body, headers=headers)



#: Methods every API route accepts, so that a wrong one gets BC's 405 body rather than the framework's.
API_METHODS = ["GET", "PATCH", "POST", "PUT", "DELETE"]


def add_route(api: APIRouter, path: str, endpoint: Callable[..., Any], *, documented: tuple[str, ...] = ("GET",)) -> None:
    """Serve every method of :data:`API_METHODS` at ``path`` with ``endpoint`` (which answers BC's 405 for the
    ones the resource does not allow); only the ``documented`` ones appear in ``/_sandbox/docs``, one route
    per method so that every operation id is unique."""
    for method in documented:
        api.add_api_route(path, endpoint, methods=[method])
    others = [method for method in API_METHODS if method not in documented]
    api.add_api_route(path, endpoint, methods=others, include_in_schema=False)


def only_get(request: Request) -> None:
    """BC's 405 for anything but GET on a read-only resource."""
    if request.method != "GET":
        raise method_not_allowed(f"'{request.method}' requests are not allowed on this resource of the sandbox.")
