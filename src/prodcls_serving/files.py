"""The names inside a model package, for the code that writes a package (`release.package`) and
the code that serves it (`prodcls_serving`, which must import neither torch nor onnx)."""

MODEL_FILE = "model.onnx"
LABEL_MAP_FILE = "label_map.json"
PREPROCESSING_FILE = "preprocessing.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
LINEAGE_FILE = "lineage.json"
# The key of preprocessing.json holding the image limits served images are held to.
IMAGE_LIMITS_KEY = "image_limits"
