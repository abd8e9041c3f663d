from prodcls_pipeline.pipelines.validate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
