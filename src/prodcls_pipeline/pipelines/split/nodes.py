"""Split nodes: assign each validated image to train, val or test, and count the result."""

import pandas as pd

from prodcls_pipeline.data import splitting
from prodcls_pipeline.framework.params import SplitParams


def split_manifest(
    validated_manifest: pd.DataFrame, params: SplitParams, seed: int
) -> pd.DataFrame:
    return splitting.assign_splits(
        validated_manifest,
        seed=seed,
        val_fraction=params.val_fraction,
        test_fraction=params.test_fraction,
    )


def summarise_splits(splits: pd.DataFrame) -> pd.DataFrame:
    splitting.warn_on_missing_splits(splits)
    return splitting.split_summary(splits)
