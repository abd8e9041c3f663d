"""Images and drops: the decoder and image store, drops and their manifest, laying a dataset out
as drops, splitting, augmentation and the preprocessing a backbone expects.

- `augmentation`: The training augmentation policy: its validated document, its transform and a
  visual preview.
- `drops`: Drops of labelled photos: reading their two formats and building the manifest.
- `history`: Laying a labelled dataset out as a realistic chronological history of drops.
- `images`: Normalise and hash product photos; keep the normalised copies in a content-addressed
  store.
- `layout`: Laying a labelled dataset out as drops: Grocery Store layout, folder tree or labels.csv.
- `preprocessing`: How an RGB image becomes a backbone's input tensor: the spec and its transforms.
- `splitting`: Stable train/val/test assignment: an image's split depends only on its own hash.
- `versioning`: Drops as DVC data versions: `dvc add`, their `.dvc` files, their hashes.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "augmentation": ["augmented_views", "build_train_transform"],
        "drops": ["READY_MARKER", "DropFormatError", "build_manifest", "scan_drop", "scan_drops"],
        "history": [
            "DEFAULT_SEED",
            "MIN_HISTORY_DROPS",
            "NOISE_KINDS",
            "NOISY",
            "RANDOM_NOISE",
            "TRUTH_COLUMNS",
            "HistoryLayout",
            "layout_history",
        ],
        "images": ["ImageStore", "IngestSettings"],
        "layout": ["DROP_ID_PATTERN", "land_drop", "layout_drops", "read_source_dataset"],
        "preprocessing": ["Preprocessing", "eval_transform"],
        "splitting": ["assign_splits", "sample_split"],
        "versioning": [
            "DVC_DIR",
            "DVC_FILE_SUFFIX",
            "DvcError",
            "drops_version",
            "dvc_dir_hash",
            "dvc_file_path",
            "dvc_file_text",
            "find_dvc_root",
            "run_dvc",
            "track_drops",
        ],
    },
)
