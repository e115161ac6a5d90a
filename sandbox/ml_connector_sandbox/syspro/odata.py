"""The SYSPRO OData service (read-only, HTTP Basic): the service document and one entity set per table, with
``$filter`` (``and`` of comparisons ``eq ne gt ge lt le`` on strings, numbers and DateTimeOffset literals,
parentheses), ``$orderby`` and server-driven paging (``@odata.nextLink`` with ``$skiptoken``)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.syspro.state import SysproState

PREFIX = "/SYSPRO8OData"
_COMPARISON = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le)\s+(.+?)\s*$")
_OPS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}


class FilterError(ValueError):
    pass


def odata_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status, headers=headers)


def _split_and(expression: str) -> list[str]:
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(expression):
        c = expression[i]
        if c == "'":
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        elif not quoted and depth == 0 and expression[i:i + 5].lower() == " and ":
            parts.append(expression[start:i])
            start = i + 5
            i += 4
        i += 1
    if depth or quoted:
        raise FilterError("unbalanced parentheses or quotes in $filter")
    parts.append(expression[start:])
    return [p.strip() for p in parts]


def _literal(text: str) -> Any:
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise FilterError(f"unsupported literal {text!r} in $filter") from None


def compile_filter(expression: str) -> list[tuple[str, str, Any]]:
    """``$filter`` as a list of (column, operator, value) that must all hold."""
    clauses = []
    for part in _split_and(expression):
        while part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
            if " and " in part.lower():
                clauses += compile_filter(part)
                part = ""
                break
        if not part:
            continue
        match = _COMPARISON.match(part)
        if not match:
            raise FilterError(f"unsupported $filter clause {part!r}")
        clauses.append((match.group(1), match.group(2), _literal(match.group(3))))
    return clauses


def _matches(row: dict[str, Any], clauses: list[tuple[str, str, Any]]) -> bool:
    for column, op, value in clauses:
        if column not in row:
            raise FilterError(f"Could not find a property named '{column}'")
        have = row[column]
        try:
            if isinstance(value, float):
                have = float(have)
            elif isinstance(value, str):
                have = str(have)
            if not _OPS[op](have, value):
                return False
        except (TypeError, ValueError):
            return False
    return True


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(v, datetime) else v)
            for k, v in row.items()}


def _authorized(state: SysproState, request: Request) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return user == state.odata_user and password == state.odata_password


def router(state: SysproState) -> APIRouter:
    api = APIRouter(prefix=PREFIX)
    challenge = {"WWW-Authenticate": 'Basic realm="SYSPRO OData"'}

    @api.get("")
    @api.get("/")
    def service_document(request: Request) -> JSONResponse:
        if not _authorized(state, request):
            state.increment("odata_auth_failures")
            return odata_error(401, "Authorization has been denied for this request.", challenge)
        return JSONResponse({"@odata.context": f"{request.base_url}{PREFIX.lstrip('/')}/$metadata",
                             "value": [{"name": n, "kind": "EntitySet", "url": n} for n in state.tables]})

    @api.get("/{entity_set}")
    def entity_set(entity_set: str, request: Request) -> JSONResponse:
        if not _authorized(state, request):
            state.increment("odata_auth_failures")
            return odata_error(401, "Authorization has been denied for this request.", challenge)
        table = state.tables.get(entity_set)
        if table is None:
            return odata_error(404, f"Resource not found for the segment '{entity_set}'.")
        q = request.query_params
        try:
            clauses = compile_filter(q["$filter"]) if q.get("$filter") else []
            with state.lock:
                rows = [r for r in table["rows"] if _matches(r, clauses)]
        except FilterError as exc:
            return odata_error(400, str(exc))
        order_by = q.get("$orderby")
        key = table["key"]
        if order_by:
            column = order_by.split()[0]
            rows.sort(key=lambda r: (str(r.get(column)), str(r[key])))
        else:
            rows.sort(key=lambda r: str(r[key]))
        size = int(state.knob("page_size"))
        prefer = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("prefer", ""))
        if prefer:
            size = min(size, max(1, int(prefer.group(1))))
        skip = int(q.get("$skiptoken") or 0)
        page = rows[skip:skip + size]
        state.increment("odata_pages_served")
        body: dict[str, Any] = {"@odata.context": f"{request.base_url}{PREFIX.lstrip('/')}/$metadata#{entity_set}",
                                "value": [_json_row(r) for r in page]}
        if skip + size < len(rows):
            params = {k: v for k, v in q.items() if k != "$skiptoken"}
            params["$skiptoken"] = str(skip + size)
            body["@odata.nextLink"] = f"{request.base_url}{PREFIX.lstrip('/')}/{entity_set}?{urlencode(params)}"
        return JSONResponse(body)

    return api
