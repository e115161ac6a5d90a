"""The seams hold: UPS knowledge only under carriers/ups, the registry as the only list of vendors, pure
mappings, no sandbox in production code, and no comment pointing outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ml_connector import registry
from ml_connector.carriers.ups.codes import SERVICE_CODES

PACKAGE = Path(__file__).resolve().parents[1] / "include" / "ml_connector"
REPO = PACKAGE.parents[1]
#: where each kind of vendor lives
HOMES = {"erp": "erp", "carrier": "carriers", "fulfilment": "fulfilment"}


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def outside(*packages: str) -> list[Path]:
    return [p for p in modules() if not any(relative(p).startswith(pkg) for pkg in packages)]


def test_no_module_outside_carriers_ups_imports_it():
    offenders = {relative(p): sorted(i for i in imports(p) if i.startswith("ml_connector.carriers.ups"))
                 for p in outside("carriers/ups/")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_outside_carriers_ups_holds_a_ups_service_code_or_rule():
    rule_markers = re.compile(r"\[A-Za-z0-9\]\{6\}|PO box|Customer Supplied Package|ReferenceNumber|1Z",
                              re.IGNORECASE)
    found = []
    for path in outside("carriers/ups/"):
        for line, value in code_strings(path):
            if value in SERVICE_CODES or rule_markers.search(value):
                found.append(f"{relative(path)}:{line}: {value!r}")
        for name in re.findall(r"\b(?:MAX_REFERENCE|REFERENCE_MAX|VALIDATED_COUNTRIES|SHIPPER_NUMBER\w*)\b",
                               path.read_text()):
            found.append(f"{relative(path)}: {name}")
    assert found == []


def test_the_registry_is_the_only_list_of_vendors():
    """Vendor names appear as code (not docs) only in the registry and in the vendor's own package."""
    found = []
    for vendor in registry.vendors():
        home = f"{HOMES[vendor.kind]}/{vendor.name}/"
        for path in outside(home, "registry.py"):
            for line, value in code_strings(path):
                if value in (vendor.name, vendor.conn_type, vendor.default_conn_id):
                    found.append(f"{relative(path)}:{line}: {value!r}")
    assert found == []


def test_every_registered_vendor_resolves():
    for vendor in registry.vendors():
        assert vendor.load("hook").conn_type == vendor.conn_type
        assert vendor.load("hook").default_conn_name == vendor.default_conn_id
        assert isinstance(vendor.load("connection_form")["conn-fields"], dict)
        vendor.load("implementation")
        if vendor.kind == "erp":
            assert vendor.load("settings").model_fields["erp"].default == vendor.name


@pytest.mark.parametrize("path", [p for p in modules() if p.name == "mapping.py" or "carriers/ups/" in relative(p)
                                  and p.stem not in ("hook", "carrier", "webhook")], ids=relative)
def test_mappings_are_pure(path):
    io = {"requests", "urllib3", "sqlalchemy", "airflow", "ml_connector.http", "ml_connector.ledger",
          "ml_connector.secrets", "socket", "httpx"}
    bad = sorted(i for i in imports(path) if i.split(".")[0] in io or any(i.startswith(m) for m in io))
    assert bad == []


def test_production_code_never_imports_the_sandbox():
    bad = {relative(p): sorted(i for i in imports(p) if i.startswith("ml_connector_sandbox")) for p in modules()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_service_and_the_ledger_know_no_airflow_and_no_vendor():
    vendor_packages = tuple(f"ml_connector.{HOMES[v.kind]}.{v.name}"
                            for v in registry.vendors())
    for path in [PACKAGE / "service.py", *modules(PACKAGE / "ledger")]:
        assert not [i for i in imports(path) if i.startswith(vendor_packages)], relative(path)
    assert not [i for i in imports(PACKAGE / "service.py") if i.startswith("airflow")]


def test_no_comment_points_outside_the_repository():
    pattern = re.compile(r"\.\./shared|shared/api-notes|api-notes/|design\.md|/work/")
    found = [f"{p.relative_to(REPO)}:{n}" for folder in ("include", "dags", "plugins", "sandbox", "tests", "bench")
             for p in (REPO / folder).rglob("*.py") if p != Path(__file__)
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
