"""Matplotlib as every plot uses it: rendered headless, every text drawn as typed."""

import matplotlib


def configure_matplotlib() -> None:
    """The Agg backend (no display), and mathtext off: labels and file names are data, and a `$`
    in one would be parsed as mathematics (and `$x^` raises while the plot is saved)."""
    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
