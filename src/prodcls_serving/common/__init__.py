"""What the pipeline runs with serving: the one image decoder and the one ONNX Runtime session
factory.

This folder is its own DVC dependency: the stages that decode images or run ONNX models depend on
it (and on `prodcls_serving/__init__.py`), not on the whole serving package, so editing a module
only serving uses re-runs the package stage alone.
"""
