"""SYSPRO hook: the e.net Solutions REST session (Logon, business objects, Logoff) and OData reads.

**e.net REST** ([3P], ``docs/vendors/erp-and-shipstation.md`` section 3): every call is an HTTP GET with query
parameters on ``{host}`` = ``.../SYSPROWCFService/Rest``: ``/Logon?Operator=&OperatorPassword=&CompanyId=
&CompanyPassword=`` answers the session's UserId (a GUID) as the body; ``/Setup/Update?UserId=&BusinessObject=
&XmlParameters=&XmlIn=`` runs a setup business object; ``/Logoff?UserId=`` ends the session. An error answer is a
body starting with ``ERROR``. Each logon takes an e.net licence seat, so (:class:`~ml_connector.hooks.auth.
SessionLogon`) the hook logs on at its first business-object call, reuses the session for the whole task, logs
on again once when SYSPRO says the session expired (the call is then retried once), and logs off in
:meth:`close` (the operators call ``OrderSource.close()`` when a task ends, success or not). Calls on one session
are serialized with a lock: concurrent calls on one e.net session collide.

**OData** ([V]): SYSPRO's OData service is read-only, HTTPS and HTTP Basic. It is a separate service (IIS), so
its base URL and credentials are extras of the same connection (``odata_url``, ``odata_user``,
``odata_password``): one connection, one Test that checks both.

Connection ``syspro_default`` (type ``syspro``): host = the e.net REST base (``https://erp:40000/SYSPROWCFService/
Rest``), login = SYSPRO operator, password = operator password, extras ``company_id`` (required),
``company_password`` (sensitive), ``odata_url`` (required), ``odata_user``, ``odata_password`` (sensitive),
``page_size`` (optional ``Prefer: odata.maxpagesize``), ``max_url_length`` (default 2048: XML travels in the
query string [U]), ``session_expired_pattern`` / ``licence_limit_pattern`` (regular expressions over an ``ERROR``
body, [U] defaults below), and the transport extras of :class:`~ml_connector.hooks.base.ConnectorHook`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus, urlencode

import requests

from ml_connector import http
from ml_connector.erp.syspro import xml
from ml_connector.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    PermanentApiError,
    RetryableApiError,
    api_error,
    shown,
)
from ml_connector.hooks.auth import BasicAuth, SessionLogon
from ml_connector.hooks.base import CHECK_RETRY, ConnectorHook

#: [U] an ERROR body that means "this UserId is not (or no longer) logged on"
DEFAULT_SESSION_EXPIRED = r"(?i)(user\s*id|session).{0,60}(invalid|expired|not logged|timed out)"
#: [U] an ERROR body that means "no free e.net licence seat" (retryable: seats free up)
DEFAULT_LICENCE_LIMIT = r"(?i)licen[cs]e"
#: [U] IIS's default maxQueryString is 2048 characters; the whole URL is checked against this
DEFAULT_MAX_URL_LENGTH = 2048
_GUID = re.compile(r"^[{(]?[0-9A-Fa-f]{8}-?([0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}[)}]?$")


class SysproError(PermanentApiError):
    """An ``ERROR...`` answer of e.net (the message carries SYSPRO's text)."""


class SysproSessionError(AuthenticationError):
    """SYSPRO refused the logon (operator, password or company)."""


class SysproLicenceLimit(RetryableApiError):
    """No free e.net licence seat for another session: retried later."""


def enet_text(response: requests.Response) -> str:
    """The body of an e.net answer as text: plain, a JSON string, or WCF's ``<string>...</string>``."""
    body = (response.text or "").strip()
    if body.startswith('"') and body.endswith('"'):
        try:
            import json

            value = json.loads(body)
            return value.strip() if isinstance(value, str) else body
        except ValueError:
            return body
    if body.startswith("<string") and body.endswith("</string>"):
        return (xml.parse(body, what="e.net answer").text or "").strip()
    return body


class SysproHook(ConnectorHook):
    """SYSPRO e.net REST (one logged-on session per hook) and the SYSPRO OData service (HTTP Basic).

    :param syspro_conn_id: the Airflow connection id.
    :param kwargs: :class:`~ml_connector.hooks.base.ConnectorHook` options.
    """

    conn_name_attr = "syspro_conn_id"
    default_conn_name = "syspro_default"
    conn_type = "syspro"
    hook_name = "SYSPRO"
    vendor = "syspro"

    def __init__(self, syspro_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(syspro_conn_id, **kwargs)
        self.syspro_conn_id = syspro_conn_id
        self._lock = threading.RLock()
        self._in_session = False

    # -- settings from the connection -------------------------------------------------------------------

    @property
    def company_id(self) -> str:
        return str(self.extra("company_id", required=True))

    @property
    def odata_url(self) -> str:
        return str(self.extra("odata_url", required=True)).rstrip("/")

    @property
    def max_url_length(self) -> int:
        try:
            return int(self.extra("max_url_length", DEFAULT_MAX_URL_LENGTH))
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'max_url_length' must be a number") from None

    def _pattern(self, name: str, default: str) -> re.Pattern[str]:
        try:
            return re.compile(str(self.extra(name, default)))
        except re.error as exc:
            raise ConfigurationError(f"connection '{self.conn_id}': extra '{name}' is not a regular expression "
                                     f"({exc})") from None

    # -- e.net session ------------------------------------------------------------------------------------

    def build_auth(self) -> SessionLogon:
        """Logon / Logoff with the session's UserId as a query parameter; an ERROR body naming the UserId as
        invalid or expired means the session expired."""
        expired = self._pattern("session_expired_pattern", DEFAULT_SESSION_EXPIRED)

        def is_expired(response: requests.Response) -> bool:
            text = (response.text or "").lstrip('"').lstrip()
            return response.status_code == 401 or (text.upper().startswith("ERROR") and bool(expired.search(text)))

        def apply(handle: str, kwargs: dict[str, Any]) -> dict[str, Any]:
            kwargs["params"] = {"UserId": handle, **(kwargs.get("params") or {})}
            return kwargs

        return SessionLogon(self.send, logon=self.logon, logoff=self.logoff, apply=apply, expired=is_expired,
                            vendor=self.vendor)

    def logon(self, *, retry: http.RetryPolicy | None = None) -> str:
        """``/Logon``: a new session's UserId.

        :raises SysproSessionError: SYSPRO refused the operator or company (its text in the message).
        :raises SysproLicenceLimit: no free licence seat.
        """
        operator, password = self.credentials()
        params = {"Operator": operator, "OperatorPassword": password, "CompanyId": self.company_id,
                  "CompanyPassword": self.extra("company_password", "")}
        http.mask(params["CompanyPassword"] or None)
        for secret in (password, params["CompanyPassword"]):  # as they travel in the query string
            http.mask(quote_plus(secret) if secret and quote_plus(secret) != secret else None)
        response = self.send("GET", f"{self.base_url}/Logon", params=params, idempotent=True,
                             **({"retry": retry} if retry else {}))
        if response.status_code != 200:
            raise api_error(f"SYSPRO e.net Logon answered HTTP {response.status_code}", vendor=self.vendor,
                            status=response.status_code)
        text = enet_text(response)
        if text.upper().startswith("ERROR"):
            if self._pattern("licence_limit_pattern", DEFAULT_LICENCE_LIMIT).search(text):
                raise SysproLicenceLimit(f"SYSPRO has no free e.net licence seat for operator '{operator}': "
                                         f"{self._clean(text)}", vendor=self.vendor, status=None)
            raise SysproSessionError(f"SYSPRO refused the logon of operator '{operator}' to company "
                                     f"'{self.company_id}' (connection '{self.conn_id}'): {self._clean(text)}",
                                     vendor=self.vendor, status=None)
        if not _GUID.match(text):
            raise SysproError(f"SYSPRO e.net Logon answered no session id ({shown(text, 80)})",
                              vendor=self.vendor, status=None)
        http.mask(text)
        return text

    def logoff(self, handle: str) -> None:
        """``/Logoff`` of one session (an ERROR answer is logged: the server expires it anyway)."""
        response = self.send("GET", f"{self.base_url}/Logoff", params={"UserId": handle}, idempotent=True)
        text = enet_text(response)
        if response.status_code != 200 or text.upper().startswith("ERROR"):
            self.log.warning("SYSPRO e.net Logoff answered %s: %s", response.status_code, self._clean(text))

    @staticmethod
    def _clean(text: str) -> str:
        return re.sub(r"^ERROR\s*[:\-]?\s*", "", text.strip(), flags=re.IGNORECASE)[:300] or "ERROR"

    @property
    def logons(self) -> int:
        """Logons made by this hook (the first, plus one per expired session)."""
        auth = self.__dict__.get("auth")
        return auth.logons if auth is not None else 0

    def close(self) -> None:
        """Log the session off, if one is open (idempotent)."""
        with self._lock:
            if self._in_session:
                self._in_session = False
                self.auth.__exit__(None, None, None)

    def call(self, path: str, params: dict[str, str], *, what: str) -> str:
        """One e.net call on the task's session (logged on first if needed); returns the answer's text.

        :param path: ``Setup/Update``, ``Query/Query``...
        :param params: query parameters besides ``UserId``.
        :param what: names the call in messages.
        :raises ConfigurationError: the URL would exceed ``max_url_length``.
        :raises SysproError: an ``ERROR`` answer (SYSPRO's text in the message).
        """
        url = f"{self.base_url}/{path}"
        # a UserId is a 36-character GUID
        length = len(url) + 1 + len(urlencode({"UserId": "0" * 36, **params}))
        if length > self.max_url_length:
            raise ConfigurationError(
                f"{what}: the e.net request URL would be {length} characters, over the connection's max_url_length "
                f"of {self.max_url_length} (e.net takes the XML in the query string; raise the web server's "
                f"maxQueryString and the 'max_url_length' extra of connection '{self.conn_id}', or write fewer "
                "custom form fields)")
        with self._lock:  # calls on one e.net session must not overlap
            if not self._in_session:
                self.auth.__enter__()
                self._in_session = True
            response = self.auth.send("GET", url, params=params, idempotent=True)
        if response.status_code != 200:
            raise api_error(f"{what}: SYSPRO e.net answered HTTP {response.status_code}", vendor=self.vendor,
                            status=response.status_code)
        text = enet_text(response)
        if text.upper().startswith("ERROR"):
            raise SysproError(f"{what}: SYSPRO answered: {self._clean(text)}", vendor=self.vendor, status=None)
        return text

    def setup_update(self, business_object: str, parameters: str, document: str, *, what: str) -> str:
        """``Setup/Update`` of a business object with ``XmlParameters`` and ``XmlIn``; returns its XmlOut."""
        return self.call("Setup/Update", {"BusinessObject": business_object, "XmlParameters": parameters,
                                          "XmlIn": document}, what=what)

    # -- OData ----------------------------------------------------------------------------------------------

    def _odata_auth(self) -> BasicAuth:
        user, password = self.extra("odata_user"), self.extra("odata_password")
        if not user or not password:
            raise ConfigurationError(f"connection '{self.conn_id}' needs the 'odata_user' and 'odata_password' "
                                     "extras (the SYSPRO OData service's Basic credentials)")
        return BasicAuth(self.send, str(user), str(password))

    def odata_get(self, url: str, params: dict[str, Any] | None = None, *,
                  retry: http.RetryPolicy | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        page_size = self.extra("page_size")
        if page_size:
            headers["Prefer"] = f"odata.maxpagesize={int(page_size)}"
        response = self._odata_auth().send("GET", url, params=params, headers=headers, idempotent=True,
                                           **({"retry": retry} if retry else {}))
        body = http.json_or_text(response) if response.content else None
        if response.status_code != 200 or not isinstance(body, dict):
            message = None
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                message = body["error"].get("message")
            message = message or (body if isinstance(body, str) else "")[:300] or f"HTTP {response.status_code}"
            if response.status_code in (401, 403):
                raise AuthenticationError(f"SYSPRO OData refused the credentials of connection '{self.conn_id}' "
                                          f"({message})", vendor=self.vendor, status=response.status_code)
            raise api_error(f"SYSPRO OData: {message}", vendor=self.vendor, status=response.status_code)
        return body

    def iter_rows(self, entity_set: str, odata_filter: str, *, order_by: str | None = None) -> Iterator[dict[str, Any]]:
        """Rows of one entity set matching ``odata_filter``, following ``@odata.nextLink`` to the last page."""
        url: str | None = f"{self.odata_url}/{entity_set}"
        params: dict[str, Any] | None = {"$filter": odata_filter}
        if order_by:
            params["$orderby"] = order_by
        while url:
            body = self.odata_get(url, params)
            yield from body.get("value", [])
            url, params = body.get("@odata.nextLink"), None

    # -- Airflow UI -------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """The UI "Test" button: Logon + Logoff with the form's credentials, then one OData read (the service
        document)."""
        try:
            handle = self.logon(retry=CHECK_RETRY)
            self.logoff(handle)
            body = self.odata_get(self.odata_url, retry=CHECK_RETRY)
        except ApiError as exc:
            return False, self.check_failure_message(exc, label="SYSPRO")
        except Exception as exc:
            return False, self.check_failure_message(exc, label="SYSPRO")
        sets = len(body.get("value", [])) if isinstance(body, dict) else 0
        return True, (f"Logged on to SYSPRO company '{self.company_id}' at {self.base_url} and off again; the "
                      f"OData service at {self.odata_url} answered with {sets} entity sets")
