"""Helpers for the connection forms every vendor package declares (Airflow >= 3.2 ``conn-fields``).

Each vendor package has a ``connection.py`` with one ``CONNECTION_FORM`` dict: the provider-info entry of its
connection type (hook class, labels, placeholders, extra fields). :mod:`ml_connector.provider` collects them
through :mod:`ml_connector.registry`.
"""

from __future__ import annotations

from typing import Any

#: The port field stays visible in every form: the Test button of Airflow 3.3's connection list sends ``port: 0``
#: for a connection saved without one, and the API then refuses it (HTTP 400 "The host or port to test differs
#: from the stored connection", apache/airflow#73298). Hooks use the port only when the host URL names none.
PORT_PLACEHOLDER = "443 (the host's port; the Test button needs it)"


def field(label: str, description: str, *, type_: str = "string", default: Any = None,
          secret: bool = False, **schema: Any) -> dict[str, Any]:
    """One extra field of a connection form.

    :param secret: masked in the form and in logs (``format: password``).
    :param schema: more JSON-schema keywords (``pattern``, ``enum``...).
    """
    spec: dict[str, Any] = {"type": [type_, "null"], **schema}
    if default is not None:
        spec["default"] = default
    if secret:
        spec["format"] = "password"  # masked in the form and in logs
    return {"label": label, "description": description, "schema": spec}




#: The transport extras every ml-connector hook applies (corporate proxies, private CAs, client certificates,
#: slow on-premise ERPs), added to every form by :mod:`ml_connector.provider`. They are never sent as headers.
TRANSPORT_FIELDS = {
    "verify": field("TLS verification", "true (default), false, or the path of a CA bundle for a private CA."),
    "proxies": field("Proxy", "Proxy URL for http and https (e.g. http://proxy.corp:3128); a JSON object "
                              "{\"https\": ...} in the raw extra for one per scheme."),
    "cert": field("Client certificate", "Path of a client certificate (PEM) where the API requires mutual TLS."),
    "timeout": field("Timeout (seconds)", "Seconds to wait for an answer (default 60; connecting: 10)."),
}
