from prodcls_pipeline.pipelines.compress.pipeline import create_pipeline

__all__ = ["create_pipeline"]
