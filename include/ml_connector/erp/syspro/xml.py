"""SYSPRO business-object XML, built and parsed safely.

Built with :mod:`xml.etree.ElementTree` element by element: every value is escaped by the serializer (``&``,
``<``, quotes, non-ASCII), never concatenated into markup. Parsed with ``defusedxml`` with DTDs forbidden: an
answer that declares a document type or an entity (billion laughs, external entities) is refused with a clear
error instead of being expanded. Some business objects answer with differently cased node names than they were
sent (``SetupCustomForm`` comes back as ``SetUpCustomForm``, ``Item`` as ``ITEM``): lookups here ignore case.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, tostring

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from ml_connector.errors import PermanentApiError, shown

_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


class SysproXmlError(PermanentApiError):
    """A SYSPRO answer that is not well-formed XML, or that declares a DTD or entities (refused, never expanded)."""


def element(tag: str, content: Mapping[str, Any] | None = None) -> Element:
    """An element whose children are ``content``'s keys: a mapping nests, a list repeats the tag, ``None``
    gives an empty element, anything else becomes text (escaped when serialized)."""
    root = Element(tag)
    _fill(root, content or {})
    return root


def _fill(parent: Element, content: Mapping[str, Any]) -> None:
    for tag, value in content.items():
        for one in value if isinstance(value, list) else [value]:
            child = SubElement(parent, tag)
            if isinstance(one, Mapping):
                _fill(child, one)
            elif one is not None:
                child.text = str(one)


def to_xml(root: Element) -> str:
    """The element as a string (no declaration: it travels in a URL query parameter)."""
    return tostring(root, encoding="unicode")


def parse(text: str, *, what: str = "SYSPRO answer") -> Element:
    """Parse a business object's XmlOut safely.

    :param what: names the answer in error messages.
    :raises SysproXmlError: not XML, or XML that declares a DTD or entities (never expanded).
    """
    body = _DECLARATION.sub("", text or "", count=1).strip()
    if not body:
        raise SysproXmlError(f"{what} is empty, expected XML", vendor="syspro")
    try:
        return safe_et.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise SysproXmlError(f"{what} declares a DTD or entities ({type(exc).__name__}); refused, nothing expanded",
                             vendor="syspro") from None
    except ParseError as exc:
        raise SysproXmlError(f"{what} is not well-formed XML ({exc}): {shown(body, 120)}", vendor="syspro") from None


def local(tag: str) -> str:
    """A tag without its namespace, lower-cased (for case-insensitive comparison)."""
    return tag.rsplit("}", 1)[-1].lower()


def children(node: Element, tag: str) -> list[Element]:
    """Direct children named ``tag``, whatever their case."""
    wanted = tag.lower()
    return [c for c in node if local(c.tag) == wanted]


def child(node: Element, tag: str) -> Element | None:
    """The first direct child named ``tag``, whatever its case."""
    found = children(node, tag)
    return found[0] if found else None


def find_all(node: Element, tag: str) -> Iterator[Element]:
    """Every descendant named ``tag``, whatever its case."""
    wanted = tag.lower()
    return (e for e in node.iter() if local(e.tag) == wanted)


def text(node: Element | None, *path: str) -> str | None:
    """The stripped text at ``path`` under ``node`` (each step case-insensitive), or None when absent/empty."""
    for step in path:
        if node is None:
            return None
        node = child(node, step)
    if node is None or node.text is None:
        return None
    return node.text.strip() or None


def error_texts(root: Element, tags: Iterable[str] = ("ErrorDescription", "ErrorMessage", "Error")) -> list[str]:
    """Error messages a business object put into its XmlOut (any of ``tags``, any depth, any case)."""
    found = []
    for tag in tags:
        found += [e.text.strip() for e in find_all(root, tag) if e.text and e.text.strip()]
    return found
