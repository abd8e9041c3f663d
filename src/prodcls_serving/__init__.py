"""prodcls serving: images in, labels and probabilities out, with numpy, pandas, Pillow,
onnxruntime and mlflow alone.

A registered model ships this package and nothing else (`code_paths`), so it imports neither
torch nor anything of prodcls_pipeline. `common/` holds what the pipeline shares with it.
"""
