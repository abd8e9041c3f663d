"""The test images the model got wrong with the most confidence: where to look first."""

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from PIL import ImageOps

from prodcls_pipeline.core.plotting import configure_matplotlib
from prodcls_pipeline.evaluation.metrics import message_figure
from prodcls_pipeline.runtime.batching import ImageSource

configure_matplotlib()

GALLERY_COLUMNS = 4
THUMBNAIL_PIXELS = 160
_INCHES_PER_THUMBNAIL = 2.6


def worst_mistakes(predictions: pd.DataFrame, count: int) -> pd.DataFrame:
    """The `count` wrong predictions with the highest confidence, most confident first."""
    wrong = predictions[predictions["predicted"] != predictions["label"]]
    return wrong.sort_values(["confidence", "sha256"], ascending=[False, True]).head(count)


def mistake_gallery(mistakes: pd.DataFrame, store: ImageSource, title: str) -> Figure:
    """One thumbnail per mistake, captioned with the true and predicted label and confidence."""
    if mistakes.empty:
        return message_figure("No mistakes on the test split", title)
    rows = math.ceil(len(mistakes) / GALLERY_COLUMNS)
    columns = min(len(mistakes), GALLERY_COLUMNS)
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(columns * _INCHES_PER_THUMBNAIL, rows * _INCHES_PER_THUMBNAIL + 0.4),
        squeeze=False,
    )
    for axes in grid.flat:
        axes.axis("off")
    for axes, mistake in zip(grid.flat, mistakes.itertuples(), strict=False):
        thumbnail = ImageOps.fit(store.open(mistake.sha256), (THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        axes.imshow(thumbnail)
        axes.set_title(
            f"true: {mistake.label}\npredicted: {mistake.predicted}\n"
            f"confidence {mistake.confidence:.2f}",
            fontsize=7,
        )
    figure.suptitle(title)
    figure.tight_layout()
    return figure
