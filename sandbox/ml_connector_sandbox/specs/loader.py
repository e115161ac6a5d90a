"""Load the vendored vendor OpenAPI specs and validate JSON documents against them.

The files under ``ml_connector_sandbox/specs/<vendor>/`` are byte-identical copies of the vendors' own
specs (see each folder's ``SOURCE.md``). Some of them do not parse with strict YAML parsers, so
the fixes are applied to the text at load time and the copies stay untouched.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError, best_match
from openapi_schema_validator import OAS30Validator, OAS31Validator
from referencing import Registry, Resource, Specification
from referencing.exceptions import Unresolvable

SPECS_DIR = Path(__file__).resolve().parent

# libyaml's C loader parses the 600 kB Shipping.yaml about 10x faster than the pure-Python one.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Longest instance excerpt kept in an error message: "{...huge dict...} is not valid" helps nobody.
_MAX_MESSAGE = 300


def _tabs_to_spaces(text: str) -> str:
    """Replace every tab by a space (YAML forbids tabs in indentation and in some scalar positions)."""
    return text.replace("\t", " ")


def _qv_request_action_length(text: str) -> str:
    """QuantumView.yaml: ``RequestAction`` has ``minLength: 11`` / ``maxLength: 11`` while its only valid value,
    ``QVEvents``, has 8 characters: no valid request could pass. Both become 8."""
    fixed = re.sub(r"(        RequestAction:\r?\n(?:          [^\n]*\n){1,8}?          minLength: )11(\r?\n          maxLength: )11",
                   r"\g<1>8\g<2>8", text, count=1)
    if fixed == text:
        raise ValueError("QuantumView.yaml: the RequestAction length fix no longer applies; check the copy")
    return fixed


#: Text fixes applied before parsing, per (vendor, filename). Add an entry rather than editing a copy.
TEXT_FIXES: dict[tuple[str, str], tuple[Callable[[str], str], ...]] = {
    ("ups", "Shipping.yaml"): (_tabs_to_spaces,),
    ("ups", "Tracking.yaml"): (_tabs_to_spaces,),
    ("ups", "QuantumView.yaml"): (_qv_request_action_length,),
}


def spec_path(vendor: str, filename: str) -> Path:
    """Return the path of a vendored spec file, refusing names that would leave the specs folder.

    :param vendor: folder under ``ml_connector_sandbox/specs`` (``"ups"``, ``"business-central"`` ...).
    :param filename: file name inside that folder.
    """
    for part in (vendor, filename):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise ValueError(f"invalid spec name {part!r}: expected a plain folder or file name")
    path = SPECS_DIR / vendor / filename
    if not path.is_file():
        raise FileNotFoundError(f"no vendored spec {vendor}/{filename} under {SPECS_DIR}")
    return path


@functools.lru_cache(maxsize=64)  # a handful of vendored files; bounded all the same
def load_spec(vendor: str, filename: str) -> dict[str, Any]:
    """Parse a vendored YAML spec, applying the known text fixes first; cached, treat as read-only.

    Fixes applied (see ``TEXT_FIXES``), all reported upstream in
    https://github.com/UPS-API/api-documentation/pull/255 ("spec files invalid for strict parsers"):

    - ``ups/Shipping.yaml``: tab characters (lines 4784-4785 and 13707 break PyYAML; many more sit
      inside descriptions) are replaced by spaces. Only description text changes.
    - ``ups/Tracking.yaml``: same fix; the tab after ``default:`` on line 185 (``shipperNum``) breaks
      PyYAML. The default becomes null, which the API never relied on.

    - ``ups/QuantumView.yaml``: ``RequestAction`` demands exactly 11 characters, but its only valid value
      ``QVEvents`` has 8; the length becomes 8 (see ``_qv_request_action_length``).

    Known quirk not fixed because it only affects an example: ``ups/UPSTrackAlert.yaml`` has
    ``descriptionCode: 021`` unquoted, which YAML 1.1 reads as the octal integer 17.

    UPS writes ``maximum: N`` on strings and arrays to mean "at most N occurrences". JSON Schema
    ignores ``maximum`` on non-numbers, so those are deliberately left as they are (not turned into
    ``maxItems``): the real API does not reject on them in any documented way.

    :param vendor: folder under ``ml_connector_sandbox/specs``.
    :param filename: the YAML file name, e.g. ``"Shipping.yaml"``.
    :return: the parsed document. Shared between callers: never mutate it.
    """
    text = spec_path(vendor, filename).read_text(encoding="utf-8")
    for fix in TEXT_FIXES.get((vendor, filename), ()):
        text = fix(text)
    document = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{vendor}/{filename} is not an OpenAPI document (top level is not a mapping)")
    return document


def _escape_pointer_token(token: str) -> str:
    """Escape one JSON-pointer token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def json_pointer(*tokens: str) -> str:
    """Build a JSON pointer (``/paths/~1a~1{b}/post``) from raw tokens."""
    return "".join("/" + _escape_pointer_token(str(token)) for token in tokens)


def format_instance_path(path: Iterable[Any]) -> str:
    """Render a jsonschema instance path as ``$.A.B[0].C`` (what a person reads in an error)."""
    rendered = "$"
    for part in path:
        rendered += f"[{part}]" if isinstance(part, int) else f".{part}"
    return rendered


def _short(message: str) -> str:
    """Cut a jsonschema message that quotes a large instance."""
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def format_error(error: ValidationError) -> str:
    """Turn one jsonschema error into ``"$.path: message"``, naming the closest cause for oneOf/anyOf."""
    text = f"{format_instance_path(error.absolute_path)}: {_short(error.message)}"
    if error.context:
        cause = best_match(error.context)
        text += f" (closest: {format_instance_path(cause.absolute_path)}: {_short(cause.message)})"
    return text


class SpecValidator:
    """Validate JSON instances against the schemas of one loaded OpenAPI 3.0 / 3.1 document.

    Local ``$ref``s (``#/components/...``) resolve inside the document through a ``referencing``
    registry, so operation schemas can be used in place. Methods return a list of
    ``"$.path: message"`` strings (empty = valid) instead of raising.

    :param spec: a document returned by :func:`load_spec` (any vendor).
    :param name: a label used in the registry URI and in errors about the spec itself.
    """

    def __init__(self, spec: dict[str, Any], *, name: str = "spec") -> None:
        self.spec = spec
        self._base_uri = f"urn:ml-connector:spec:{name}"
        version = str(spec.get("openapi", "3.0"))
        self._validator_class = OAS31Validator if version.startswith("3.1") else OAS30Validator
        # OPAQUE: the OpenAPI document as a whole is not a JSON Schema, so no "id"/"$id" in it may move
        # the base URI; JSON pointers simply walk the document.
        resource = Resource(contents=spec, specification=Specification.OPAQUE)
        self._registry = Registry().with_resource(self._base_uri, resource)
        self._validators: dict[str, Any] = {}

    # -- where the schemas are ------------------------------------------------------------------
    def _resolve(self, pointer: str, _seen: frozenset[str] = frozenset()) -> tuple[str, Any]:
        """Walk ``pointer`` in the document, following a local ``$ref`` at the end; return (pointer, node)."""
        node: Any = self.spec
        tokens = pointer[1:].split("/") if pointer else []
        for raw in tokens:
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            elif isinstance(node, dict) and token in node:
                node = node[token]
            else:
                raise LookupError(f"{pointer} not found in {self._base_uri}")
        ref = node.get("$ref") if isinstance(node, dict) else None
        if isinstance(ref, str) and ref.startswith("#"):
            if pointer in _seen:
                raise LookupError(f"$ref loop at {pointer} in {self._base_uri}")
            return self._resolve(ref[1:], _seen | {pointer})
        return pointer, node

    def operation_pointer(self, path: str, method: str) -> str:
        """JSON pointer of an operation, e.g. ``("/shipments/{version}/ship", "post")``."""
        pointer = json_pointer("paths", path, method.lower())
        self._resolve(pointer)  # fail early with a clear LookupError
        return pointer

    def request_schema_pointer(self, path: str, method: str, content_type: str = "application/json") -> str:
        """JSON pointer of an operation's requestBody schema (following a ``$ref``'d requestBody)."""
        body_pointer, _ = self._resolve(self.operation_pointer(path, method) + "/requestBody")
        return body_pointer + json_pointer("content", content_type, "schema")

    def response_schema_pointer(self, path: str, method: str, status: int | str = 200,
                                content_type: str = "application/json") -> str:
        """JSON pointer of an operation's response schema for ``status`` (falls back to ``default``)."""
        responses_pointer = self.operation_pointer(path, method) + "/responses"
        _, responses = self._resolve(responses_pointer)
        key = str(status) if str(status) in responses else "default"
        response_pointer, _ = self._resolve(responses_pointer + json_pointer(key))
        return response_pointer + json_pointer("content", content_type, "schema")

    # -- validation -----------------------------------------------------------------------------
    def _validator_for(self, pointer: str) -> Any:
        """Build (once) a validator whose root schema is a ``$ref`` to ``pointer`` in the document."""
        validator = self._validators.get(pointer)
        if validator is None:
            self._resolve(pointer)
            schema = {"$ref": f"{self._base_uri}#{pointer}"}
            validator = self._validator_class(schema, registry=self._registry)
            self._validators[pointer] = validator
        return validator

    def errors_at(self, pointer: str, instance: Any) -> list[str]:
        """Validate ``instance`` against the schema at JSON ``pointer``; return readable errors."""
        try:
            errors = sorted(self._validator_for(pointer).iter_errors(instance),
                            key=lambda e: [str(p) for p in e.absolute_path])
        except Unresolvable as exc:
            return [f"spec error in {self._base_uri}: unresolvable reference {exc}"]
        return [format_error(error) for error in errors]

    def component_errors(self, schema_name: str, instance: Any) -> list[str]:
        """Validate against ``#/components/schemas/<schema_name>``."""
        return self.errors_at(json_pointer("components", "schemas", schema_name), instance)

    def request_errors(self, path: str, method: str, instance: Any,
                       content_type: str = "application/json") -> list[str]:
        """Validate a request body against the operation's requestBody schema."""
        return self.errors_at(self.request_schema_pointer(path, method, content_type), instance)

    def response_errors(self, path: str, method: str, instance: Any, status: int | str = 200,
                        content_type: str = "application/json") -> list[str]:
        """Validate a response body against the operation's schema for ``status``."""
        return self.errors_at(self.response_schema_pointer(path, method, status, content_type), instance)


@functools.lru_cache(maxsize=64)  # a handful of vendored files; bounded all the same
def spec_validator(vendor: str, filename: str) -> SpecValidator:
    """Return a cached :class:`SpecValidator` for a vendored spec (validators are reused across calls)."""
    return SpecValidator(load_spec(vendor, filename), name=f"{vendor}/{filename}")
