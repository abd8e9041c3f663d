"""Each area's `__init__.py` names its public API: every name there resolves, every name code
outside the area imports from it is listed, and importing the area imports none of its modules."""

import ast
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
from helpers import REPO, SRC

AREAS = sorted(
    path.name
    for path in (SRC / "prodcls_pipeline").iterdir()
    if (path / "__init__.py").is_file() and path.name != "pipelines"
)
CALLERS = [SRC, REPO / "benchmarks", REPO / "scripts"]


def names_imported_from_outside(area: str) -> set[tuple[str, str]]:
    """(module, name) of every `from prodcls_pipeline.<area>.<module> import name` outside it."""
    inside = SRC / "prodcls_pipeline" / area
    found = set()
    for folder in CALLERS:
        for path in folder.rglob("*.py"):
            if path.is_relative_to(inside):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[:2] == ["prodcls_pipeline", area] and len(parts) == 3:
                        found |= {(parts[2], alias.name) for alias in node.names}
    return found


@pytest.mark.parametrize("area", AREAS)
def test_every_listed_name_resolves_to_its_module(area: str) -> None:
    package = import_module(f"prodcls_pipeline.{area}")
    assert package.__all__, f"{area}/__init__.py names no public API"
    for name in package.__all__:
        assert getattr(package, name) is not None, f"{area}.{name}"


@pytest.mark.parametrize("area", AREAS)
def test_what_other_code_imports_is_listed(area: str) -> None:
    area_name = f"prodcls_pipeline.{area}"
    package = import_module(area_name)
    missing = sorted(
        f"prodcls_pipeline.{area}.{module}.{name}"
        for module, name in names_imported_from_outside(area)
        if name not in package.__all__
        or getattr(package, name)
        is not getattr(import_module(f"{package.__name__}.{module}"), name)
    )
    assert not missing, f"imported from outside {area}/ but not in its __init__: {missing}"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        import_module("prodcls_pipeline.data").nonexistent  # noqa: B018


def test_importing_every_area_imports_none_of_their_modules() -> None:
    areas = ", ".join(f"prodcls_pipeline.{area}" for area in AREAS)
    script = (
        f"import sys, {areas}\n"
        "loaded = {m for m in sys.modules if m.startswith('prodcls_pipeline.')}\n"
        "print(sorted(m for m in loaded if m.count('.') > 1) == ['prodcls_pipeline.core.exports'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=Path(REPO)
    )
    assert result.stdout.strip() == "True", result.stdout
