"""The production distribution never ships the sandbox: the wheel of the project root, and the imports of its code.

The sandboxes, devtools and the vendored vendor specs live in their own distribution (``sandbox/``,
``ml-connector-sandbox``). These tests build the root wheel the way ``pip install .`` (and the Dockerfile) does
and look inside it, and scan ``include/ml_connector`` for any import of ``ml_connector_sandbox``.
"""

from __future__ import annotations

import ast
import email
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("packaging")  # one copy and one build per run, not one per worker
PRODUCTION = ROOT / "include" / "ml_connector"
SANDBOX_PACKAGE = "ml_connector_sandbox"
#: What only the sandbox distribution may contain (path fragments, lower case).
SANDBOX_ONLY = ("ml_connector_sandbox", "sandbox/", "devtools", "specs/", "openapi", "seed.json")
#: Vendored spec file names (the sandbox validates every request against them), not the loader's modules.
SPEC_FILES = {path.name for path in (ROOT / "sandbox" / SANDBOX_PACKAGE / "specs").rglob("*")
              if path.is_file() and path.suffix not in (".py", ".pyc")}
#: Requirements of the sandbox distribution that production must not pull in.
SANDBOX_REQUIREMENTS = ("ml-connector-sandbox", "fastapi", "uvicorn", "openapi-schema-validator")
#: Not part of a source checkout (and large, or someone else's): never copied for the build.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".airflow", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache", "logs", "*.db", "node_modules")


def _can_build_without_isolation() -> bool:
    """setuptools >= 70.1 builds wheels by itself; older ones need the ``wheel`` package."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) >= (70, 1):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _build_wheel(source: Path, out: Path) -> Path:
    """``pip wheel SOURCE --no-deps`` into ``out``; the one wheel built."""
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--wheel-dir", str(out),
               "--quiet", "--disable-pip-version-check"]
    if _can_build_without_isolation():
        command.append("--no-build-isolation")  # fast, offline; else pip fetches setuptools for the build
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    built = list(out.glob("*.whl"))
    assert len(built) == 1, f"expected one wheel, got {[p.name for p in built]}"
    return built[0]


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """A copy of the project (the checkout itself is never written to by a build)."""
    source = tmp_path_factory.mktemp("packaging") / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    return source


@pytest.fixture(scope="module")
def wheel(source_copy) -> zipfile.ZipFile:
    """The production wheel: ``pip wheel . --no-deps`` of the project root."""
    with zipfile.ZipFile(_build_wheel(source_copy, source_copy.parent / "wheels")) as archive:
        yield archive


def test_production_wheel_has_no_sandbox_devtools_or_specs(wheel):
    names = wheel.namelist()
    assert {"AddressValidation.yaml", "Shipping.yaml", "SOURCE.md"} <= SPEC_FILES
    assert any(name.startswith("ml_connector/") for name in names)
    assert "ml_connector/provider.py" in names  # the provider entry point's module ships
    offending = [name for name in names if any(part in name.lower() for part in SANDBOX_ONLY)
                 or Path(name).name in SPEC_FILES]
    assert offending == [], f"sandbox files in the production wheel: {offending}"
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"ml_connector", next(n for n in top_level if n.endswith(".dist-info"))}, top_level


def test_production_wheel_metadata_neither_names_nor_requires_the_sandbox(wheel):
    dist_info = next(name.split("/")[0] for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
    metadata = email.message_from_bytes(wheel.read(f"{dist_info}/METADATA"))
    assert metadata["Name"] == "ml-connector"
    requires = [requirement.lower() for requirement in metadata.get_all("Requires-Dist") or []]
    assert not [r for r in requires if r.startswith(SANDBOX_REQUIREMENTS)], requires
    top_level = wheel.read(f"{dist_info}/top_level.txt").decode().split()
    assert top_level == ["ml_connector"]
    entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "ml_connector.provider:get_provider_info" in entry_points and SANDBOX_PACKAGE not in entry_points


def _sandbox_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line`` of every import of ml_connector_sandbox in a Python file, static or by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call):  # importlib.import_module("..."), __import__("...")
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
        if any(name == SANDBOX_PACKAGE or name.startswith(f"{SANDBOX_PACKAGE}.") for name in names):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_production_code_never_imports_the_sandbox():
    sources = sorted(PRODUCTION.rglob("*.py"))
    assert len(sources) > 10, f"expected the production package under {PRODUCTION}"
    offending = [hit for source in sources for hit in _sandbox_imports(source)]
    assert offending == [], f"production code imports the sandbox: {offending}"


def test_the_import_scan_catches_every_form(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import ml_connector_sandbox\nfrom ml_connector_sandbox.ups import create_app\n"
                     "import importlib\nimportlib.import_module('ml_connector_sandbox.testing')\n"
                     "from ml_connector import sandbox_free\nimport ml_connector_sandboxed\n"
                     "from . import ml_connector_sandbox\n")
    assert _sandbox_imports(probe, root=tmp_path) == ["probe.py:1", "probe.py:2", "probe.py:4"]


def test_the_sandbox_distribution_carries_its_data(source_copy):
    """The other side: ``sandbox/`` builds ml-connector-sandbox with the vendored specs and the BC seed."""
    with zipfile.ZipFile(_build_wheel(source_copy / "sandbox", source_copy.parent / "sandbox-wheels")) as archive:
        names = set(archive.namelist())
    assert {f"{SANDBOX_PACKAGE}/specs/ups/{name}" for name in ("Shipping.yaml", "Tracking.yaml", "SOURCE.md")} <= names
    assert {f"{SANDBOX_PACKAGE}/business_central/seed.json", f"{SANDBOX_PACKAGE}/credentials.py",
            f"{SANDBOX_PACKAGE}/ups/__init__.py", f"{SANDBOX_PACKAGE}/devtools.py"} <= names
    assert not any(name.startswith("ml_connector/") for name in names)
