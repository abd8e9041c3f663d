"""The file names inside a model package: one list for the code that writes a package
(`packaging`) and the code that serves it (`serving`, which must import neither torch nor onnx)."""

MODEL_FILE = "model.onnx"
LABEL_MAP_FILE = "label_map.json"
PREPROCESSING_FILE = "preprocessing.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
LINEAGE_FILE = "lineage.json"
