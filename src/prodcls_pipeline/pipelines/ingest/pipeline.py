"""Ingest pipeline: raw drops → manifest (and the normalised copies in the image store), and the
drops' DVC versions."""

from kedro.pipeline import Pipeline, node

from prodcls_pipeline.pipelines.ingest.nodes import ingest_drops, record_drops_version


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                ingest_drops,
                inputs=["raw_drops", "image_store", "params:ingest"],
                outputs="manifest",
                name="ingest_drops",
            ),
            node(
                record_drops_version,
                inputs="raw_drops",
                outputs="drops_version",
                name="record_drops_version",
            ),
        ]
    )
