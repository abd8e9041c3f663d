from prodcls_pipeline.pipelines.augment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
