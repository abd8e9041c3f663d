from prodcls_pipeline.pipelines.package.pipeline import create_pipeline

__all__ = ["create_pipeline"]
