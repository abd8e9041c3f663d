"""The manifest's columns and types, the split names and the image statuses: the words every
stage uses for the same rows, defined once."""

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)
# An image with no split pinned by its drop's labels.csv gets one from its hash.
UNPINNED = ""
PINNED_SPLITS = (UNPINNED, *SPLITS)
# Every class needs training images to be learnt and test images to be measured.
REQUIRED_SPLITS = (TRAIN, TEST)

OK, QUARANTINED = "ok", "quarantined"
STATUSES = (OK, QUARANTINED)

# One row per candidate file of every drop, in this column order.
MANIFEST_DTYPES = {
    "sha256": "str",
    "drop": "str",
    "source_path": "str",
    "label": "str",
    "coarse_label": "str",
    "pinned_split": "str",
    "width": "int64",
    "height": "int64",
    "format": "str",
    "bytes": "int64",
    "status": "str",
    "quarantine_reason": "str",
    # The label and coarse label as the drop spelt them, where normalisation changed them
    # (`Kiwi ` for `Kiwi`); empty where the drop spelt them as they are.
    "given_label": "str",
    "given_coarse_label": "str",
}
MANIFEST_COLUMNS = tuple(MANIFEST_DTYPES)
INTEGER_COLUMNS = tuple(column for column, dtype in MANIFEST_DTYPES.items() if dtype == "int64")

# One row per ok image: its split, by sha256.
SPLIT_COLUMNS = ("sha256", "label", "coarse_label", "split")
