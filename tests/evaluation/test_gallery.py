import hashlib

import pandas as pd
from PIL import Image

from prodcls_pipeline.evaluation.gallery import mistake_gallery, worst_mistakes
from prodcls_pipeline.evaluation.metrics import figure_png


class ColourStore:
    """Solid-colour images keyed by their sha256, like `images.ImageStore`."""

    def __init__(self, count: int) -> None:
        images = [Image.new("RGB", (80, 60), (20 * index, 100, 200)) for index in range(count)]
        self.images = {hashlib.sha256(image.tobytes()).hexdigest(): image for image in images}

    def open(self, sha256: str) -> Image.Image:
        return self.images[sha256].copy()


def predictions(store: ColourStore) -> pd.DataFrame:
    sha256s = list(store.images)
    count = len(sha256s)
    return pd.DataFrame(
        {
            "sha256": sha256s,
            "label": ["apple"] * count,
            "predicted": ["apple", "pear"] * (count // 2),
            "confidence": [index / count for index in range(count)],
        }
    )


def test_worst_mistakes_are_the_most_confident_wrong_predictions() -> None:
    table = predictions(ColourStore(10))
    mistakes = worst_mistakes(table, 3)
    assert (mistakes["predicted"] != mistakes["label"]).all()
    assert mistakes["confidence"].tolist() == [0.9, 0.7, 0.5]


def test_gallery_shows_one_thumbnail_per_mistake() -> None:
    store = ColourStore(12)
    mistakes = worst_mistakes(predictions(store), 5)
    figure = mistake_gallery(mistakes, store, "worst mistakes")
    thumbnails = [axes for axes in figure.axes if axes.images]
    assert len(thumbnails) == 5
    assert "true: apple" in thumbnails[0].get_title()
    assert "predicted: pear" in thumbnails[0].get_title()
    assert "confidence 0.92" in thumbnails[0].get_title()
    assert figure_png(figure).startswith(b"\x89PNG")


def test_gallery_without_mistakes_still_renders() -> None:
    store = ColourStore(4)
    none = worst_mistakes(predictions(store).assign(predicted="apple"), 5)
    assert none.empty
    assert figure_png(mistake_gallery(none, store, "worst mistakes")).startswith(b"\x89PNG")
