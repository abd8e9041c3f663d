"""Imports flow one way: pipelines → areas → the shared core; the serving package stands alone.

An area may import only areas below it in `AREA_LAYERS`; the Kedro glue (`framework`) imports
only the core; the serving package imports nothing of prodcls_pipeline and never torch, so a
registered model runs with numpy, pandas, Pillow, onnxruntime and mlflow alone.
"""

import pytest
from helpers import imported_modules, module_file, project_modules

# Lowest first: each area may import those before it in this list.
AREA_LAYERS = (
    "core",
    "data",
    "validation",
    "models",
    "runtime",
    "evaluation",
    "training",
    "compression",
    "release",
    "audit",
    "watching",
)
# Entry points and glue, above every area.
TOP_LEVEL = ("pipelines", "cli", "settings", "pipeline_registry", "__main__", "framework")
SERVING = "prodcls_serving"
# Heavy or training-side packages a registered model must not need.
FORBIDDEN_IN_SERVING = ("torch", "torchvision", "timm", "onnx", "kedro", "sklearn")


def _area(module: str) -> str:
    parts = module.split(".")
    if parts[0] == SERVING:
        return SERVING
    return parts[1] if len(parts) > 1 else ""


def _allowed(source: str, target: str) -> bool:
    if SERVING in (source, target):
        return target == SERVING
    if source == "framework":
        return target in ("framework", "core")
    if source in TOP_LEVEL:
        return True
    if source in AREA_LAYERS and target in AREA_LAYERS:
        return AREA_LAYERS.index(target) <= AREA_LAYERS.index(source)
    return False


def test_every_area_is_placed_in_the_layers() -> None:
    areas = {_area(module) for module in project_modules()} - {"", SERVING}
    unplaced = sorted(areas - set(AREA_LAYERS) - set(TOP_LEVEL))
    assert not unplaced, f"place these packages in AREA_LAYERS or TOP_LEVEL: {unplaced}"


@pytest.mark.parametrize("module", project_modules())
def test_imports_flow_one_way(module: str) -> None:
    source = _area(module)
    offending = [
        f"{module_file(module).name}:{line} imports {target} ({source} → {_area(target)})"
        for target, line in imported_modules(module).items()
        if not _allowed(source, _area(target))
    ]
    assert not offending, f"{module}: {'; '.join(offending)}"


@pytest.mark.parametrize("module", [m for m in project_modules() if m.startswith(SERVING)])
def test_serving_imports_no_training_stack(module: str) -> None:
    import ast

    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    names = [
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    offending = sorted({n for n in names if n.split(".")[0] in FORBIDDEN_IN_SERVING})
    assert not offending, f"{module} imports {offending}"
