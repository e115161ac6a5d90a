"""e.net Solutions REST (``/SYSPROWCFService/Rest``): Logon, Logoff and the Setup business object ``COMSFM``.

Every call is a GET with query parameters; answers are plain text: the session's UserId for Logon, the business
object's XmlOut for Setup, and ``ERROR: ...`` for every failure (HTTP 200, as e.net answers). A call on a session
another call is using is answered with an error (concurrent calls on one session collide), and a session unused
for ``session_idle_seconds`` is gone (its UserId is refused).
"""

from __future__ import annotations

import time
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as safe_et
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ml_connector_sandbox.credentials import SYSPRO_OPERATOR, SYSPRO_OPERATOR_PASSWORD
from ml_connector_sandbox.syspro.state import SysproState

PREFIX = "/SYSPROWCFService/Rest"
#: custom form type -> the table whose keys it holds
FORM_TYPES = {"INV": "ArInvoice", "POR": "PorMasterHdr", "ORD": "SorMaster"}
#: the custom form fields the sandbox's SYSPRO admin created (alphanumeric, 30 characters)
FORM_FIELDS = {"TRACKNO", "SHIPSTAT", "SHIPCOST", "SHIPCURR"}
FIELD_LENGTH = 30
EXPIRED = "ERROR: UserId is invalid or has expired; log on again"
BOMB = ('<?xml version="1.0"?><!DOCTYPE SetupCustomForm [<!ENTITY a "boom"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;">]><SetupCustomForm><Item><Status>&c;</Status></Item></SetupCustomForm>')


def text(body: str) -> PlainTextResponse:
    return PlainTextResponse(body, media_type="text/plain; charset=utf-8")


def _lower(tag: str) -> str:
    return tag.lower()


def _child_text(node: Element, name: str) -> str:
    for child in node:
        if _lower(child.tag) == name.lower():
            return (child.text or "").strip()
    return ""


def _child(node: Element, name: str) -> Element | None:
    return next((c for c in node if _lower(c.tag) == name.lower()), None)


def router(state: SysproState) -> APIRouter:
    api = APIRouter(prefix=PREFIX)

    @api.get("/Logon")
    def logon(request: Request) -> PlainTextResponse:
        q = request.query_params
        operator, password = q.get("Operator", ""), q.get("OperatorPassword", "")
        if operator != SYSPRO_OPERATOR or password != SYSPRO_OPERATOR_PASSWORD:
            state.increment("logon_errors")
            return text(f"ERROR: Invalid operator or password for operator '{operator}'")
        if q.get("CompanyId", "") != state.company_id:
            state.increment("logon_errors")
            return text(f"ERROR: Company '{q.get('CompanyId', '')}' not found")
        if q.get("CompanyPassword", "") != state.company_password:
            state.increment("logon_errors")
            return text("ERROR: Invalid company password")
        guid = state.logon(operator)
        if guid is None:
            return text(f"ERROR: No e.net licence is available for another session (licence limit of "
                        f"{state.knob('licence_seats')} concurrent users reached)")
        return text(guid)

    @api.get("/Logoff")
    def logoff(request: Request) -> PlainTextResponse:
        if not state.logoff(request.query_params.get("UserId", "")):
            return text(EXPIRED)
        return text("0")

    def business_object(request: Request, kind: str) -> PlainTextResponse:
        q = request.query_params
        guid = q.get("UserId", "")
        if not state.use_session(guid):
            return text(EXPIRED)
        with state.busy_lock:
            if guid in state.busy:
                state.increment("session_collisions")
                return text("ERROR: The session is in use by another call")
            state.busy.add(guid)
        try:
            latency = state.knob("call_latency_ms")
            if latency:
                time.sleep(latency / 1000)
            state.increment("business_object_calls")
            name = q.get("BusinessObject", "")
            if name.upper() != "COMSFM":
                return text(f"ERROR: Business object '{name}' is not supported for {kind}")
            return setup_custom_form(q.get("XmlIn", ""), kind)
        finally:
            with state.busy_lock:
                state.busy.discard(guid)

    def setup_custom_form(xml_in: str, kind: str) -> PlainTextResponse:
        try:
            document = safe_et.fromstring(xml_in, forbid_dtd=True)
        except Exception as exc:  # noqa: BLE001 - e.net answers any XML problem with an ERROR body
            return text(f"ERROR: XmlIn is not valid XML: {exc}")
        if _lower(document.tag) != "setupcustomform":
            return text(f"ERROR: XmlIn root must be SetupCustomForm, got {document.tag}")
        if state.take_one("malicious_answer_next"):
            return text(BOMB)
        # SYSPRO answers with node names of another case than were sent
        out = Element("SetUpCustomForm")
        for item in (c for c in document if _lower(c.tag) == "item"):
            key = _child(item, "Key")
            form_type = _child_text(key, "FormType").upper() if key is not None else ""
            key_field = _child_text(key, "KeyField") if key is not None else ""
            field_name = _child_text(key, "FieldName").upper() if key is not None else ""
            value = _child_text(item, "AlphaValue")
            answer = SubElement(out, "ITEM")
            echo = SubElement(answer, "KEY")
            for tag, v in (("FormType", form_type), ("KeyField", key_field), ("FieldName", field_name)):
                SubElement(echo, tag).text = v
            problem = None
            table = FORM_TYPES.get(form_type)
            if table is None:
                problem = f"Form type '{form_type}' is not a valid custom form type"
            elif state.find_row(table, key_field) is None:
                problem = f"Key '{key_field}' not found for form type '{form_type}'"
            elif field_name not in FORM_FIELDS:
                problem = f"Field '{field_name}' is not defined for form type '{form_type}'"
            elif len(value) > FIELD_LENGTH:
                problem = f"Value for field '{field_name}' exceeds {FIELD_LENGTH} characters"
            if problem:
                SubElement(answer, "ErrorDescription").text = problem
                continue
            with state.lock:
                state.custom_forms[(form_type, key_field, field_name)] = value
            SubElement(answer, "STATUS").text = "Updated" if kind == "Update" else "Added"
        return text(tostring(out, encoding="unicode"))

    @api.get("/Setup/Update")
    def setup_update(request: Request) -> PlainTextResponse:
        return business_object(request, "Update")

    @api.get("/Setup/Add")
    def setup_add(request: Request) -> PlainTextResponse:
        return business_object(request, "Add")

    @api.get("/Query/Query")
    def query(request: Request) -> PlainTextResponse:
        guid = request.query_params.get("UserId", "")
        if not state.use_session(guid):
            return text(EXPIRED)
        return text(f"ERROR: Business object '{request.query_params.get('BusinessObject', '')}' is not available "
                    "in this sandbox")

    return api
