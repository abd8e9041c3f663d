"""Each DVC stage depends on exactly the code its `kedro run` executes, by folder.

The code a stage runs is what its nodes import, transitively, plus the Kedro glue every run loads
(settings, the pipeline registry, the framework) and the store classes its catalog entries name.
A module outside the stage's deps means an edit to it would not re-run the stage, and the model's
lineage would vouch for stale outputs; a code dep holding none of those modules re-runs the stage
for nothing.
"""

from pathlib import Path

import pytest
import yaml
from helpers import REPO, SRC, import_closure, module_file

from prodcls_pipeline.pipeline_registry import STAGES

KEDRO_GLUE = ["prodcls_pipeline.settings", "prodcls_pipeline.pipeline_registry"]


def _dvc_stages() -> dict[str, dict]:
    document = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    variables = {key: value for entry in document.get("vars", []) for key, value in entry.items()}
    stages = document["stages"]
    for stage in stages.values():
        stage["deps"] = [_expand(dep, variables) for dep in stage.get("deps", [])]
    return stages


def _expand(dep: str, variables: dict[str, str]) -> str:
    for key, value in variables.items():
        dep = dep.replace("${" + key + "}", value)
    return dep.rstrip("/")


def _catalog_store_modules(stage: str) -> list[str]:
    """The modules of the store classes named by the catalog entries the stage's pipeline uses."""
    from importlib import import_module

    catalog = yaml.safe_load((REPO / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    pipeline = import_module(f"prodcls_pipeline.pipelines.{stage}").create_pipeline()
    modules = []
    for name in pipeline.datasets():
        entry = catalog.get(name, {})
        for key in ("type", "store", "dataset"):
            value = entry.get(key)
            if isinstance(value, str) and value.startswith("prodcls_pipeline."):
                modules.append(value.rpartition(".")[0])
    return modules


def stage_code(stage: str) -> set[Path]:
    """The source files `kedro run --pipelines <stage>` executes."""
    roots = [
        f"prodcls_pipeline.pipelines.{stage}.pipeline",
        f"prodcls_pipeline.pipelines.{stage}.nodes",
        *KEDRO_GLUE,
        *_catalog_store_modules(stage),
    ]
    return {module_file(module) for module in import_closure(roots)}


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == REPO / dep or (REPO / dep) in path.parents for dep in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_runs_is_in_its_deps(stage: str) -> None:
    deps = _dvc_stages()[stage]["deps"]
    missing = sorted(
        str(path.relative_to(REPO)) for path in stage_code(stage) if not _covered(path, deps)
    )
    assert not missing, f"dvc.yaml stage {stage!r} runs code its deps miss: {', '.join(missing)}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_code_dep_of_a_stage_holds_code_it_runs(stage: str) -> None:
    code = stage_code(stage)
    code_deps = [dep for dep in _dvc_stages()[stage]["deps"] if (REPO / dep).is_relative_to(SRC)]
    idle = [dep for dep in code_deps if not any(_covered(path, [dep]) for path in code)]
    assert not idle, f"dvc.yaml stage {stage!r} depends on code it never runs: {', '.join(idle)}"


def test_code_deps_are_folders_or_top_level_modules() -> None:
    """Area modules are listed by their area folder, never file by file; only the top-level glue
    (settings, the registry) and a package's `__init__` stand alone."""
    for name, stage in _dvc_stages().items():
        for dep in stage["deps"]:
            path = REPO / dep
            if path.is_relative_to(SRC) and path.is_file() and path.name != "__init__.py":
                assert path.parent.parent == SRC, f"{name}: list {path.parent.name}/, not {dep}"


def test_the_closure_sees_imports_inside_functions() -> None:
    """The walk must follow a lazy import, or a stage could run code its deps miss."""
    code = stage_code("validate")
    assert module_file("prodcls_pipeline.validation.checks") in code
    assert module_file("prodcls_pipeline.training.loop") not in code
