"""The eight stages, one Kedro pipeline each, in the order of dvc.yaml."""

from importlib import import_module

from kedro.pipeline import Pipeline

STAGES = ("ingest", "validate", "split", "augment", "train", "evaluate", "compress", "package")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        stage: import_module(f"prodcls_pipeline.pipelines.{stage}").create_pipeline()
        for stage in STAGES
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
