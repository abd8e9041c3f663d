"""The eight stages, one Kedro pipeline each, in the order of dvc.yaml.

Each dvc stage runs `kedro run --pipelines <stage>`; Kedro then asks `find_pipelines` for that
stage alone, which imports that stage's nodes alone: a stage's process does not import torch,
Great Expectations or MLflow for the stages it does not run (that cost ~10 s per stage).

Each stage is also a Kedro namespace, so that kedro-viz draws it as one collapsible group. Only
node names take the prefix (`split.split_manifest_node`): the stages meet through datasets and
parameters, whose names must stay those of the catalog and params.yaml.
"""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

STAGES = ("ingest", "validate", "split", "augment", "train", "evaluate", "compress", "package")


def register_pipelines() -> dict[str, Pipeline]:
    """The stages Kedro asks for (all of them unless a run names some), each in its namespace,
    and, when all are loaded, `__default__`: the eight together."""
    pipelines = {
        name: Pipeline(stage, namespace=name, prefix_datasets_with_namespace=False)
        for name, stage in find_pipelines(raise_errors=True).items()
    }
    if set(STAGES) <= pipelines.keys():
        pipelines["__default__"] = sum((pipelines[stage] for stage in STAGES), Pipeline([]))
    return pipelines
