"""Benchmarks of prodcls on the full dataset: each module runs as `python -m benchmarks.<name>`."""
