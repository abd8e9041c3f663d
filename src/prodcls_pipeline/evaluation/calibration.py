"""Calibration: does a confidence of 0.8 mean the prediction is right 8 times in 10?"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from prodcls_pipeline.core.numbers import round_metric
from prodcls_pipeline.core.plotting import configure_matplotlib

configure_matplotlib()

# Temperatures searched (log-uniformly): far wider than any trained classifier needs.
_TEMPERATURE_RANGE = (0.05, 20.0)


def reliability_table(confidences: np.ndarray, correct: np.ndarray, bins: int) -> pd.DataFrame:
    """Top-1 confidence against accuracy in `bins` equal-width confidence bins over [0, 1].

    A bin holds the confidences in (lower, upper]; the first also holds 0. An empty bin has
    NaN confidence and accuracy, and weighs nothing in the calibration error.
    """
    if bins < 1:
        raise ValueError(f"calibration_bins must be at least 1, got {bins}")
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(confidences * bins).astype(int) - 1, 0, bins - 1)
    images = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidences, minlength=bins) / images
        accuracy = np.bincount(index, weights=correct, minlength=bins) / images
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "images": images,
            "confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def expected_calibration_error(table: pd.DataFrame) -> float:
    """The image-weighted mean gap between confidence and accuracy (Guo et al., 2017)."""
    filled = table[table["images"] > 0]
    if filled.empty:
        return 0.0
    gaps = (filled["accuracy"] - filled["confidence"]).abs()
    return float((gaps * filled["images"]).sum() / filled["images"].sum())


def calibration_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The calibration scalars for metrics.json."""
    return {"ece": round_metric(expected_calibration_error(table))}


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T for which softmax(logits / T) has the lowest cross-entropy on these
    held-out logits (temperature scaling, Guo et al., 2017).

    One scalar for all classes, so the ranking of the classes, and with it every top-k metric,
    is unchanged: only the confidences move toward what the model really achieves.
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    if logits.ndim != 2 or len(logits) != len(targets) or len(targets) == 0:
        raise ValueError(
            f"Temperature scaling needs (n, classes) logits and n > 0 targets, "
            f"got {logits.shape} and {targets.shape}"
        )
    rows = np.arange(len(targets))

    def cross_entropy(log_temperature: float) -> float:
        scaled = log_softmax(logits / np.exp(log_temperature), axis=1)
        return float(-scaled[rows, targets].mean())

    lowest, highest = np.log(_TEMPERATURE_RANGE)
    fit = minimize_scalar(cross_entropy, bounds=(lowest, highest), method="bounded")
    return float(np.exp(fit.x))


def reliability_figure(table: pd.DataFrame) -> Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration, and bin sizes."""
    figure, (reliability, counts) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = table["upper"] - table["lower"]
    filled = table["images"] > 0
    reliability.bar(
        table["lower"][filled],
        table["accuracy"][filled],
        width=width[filled],
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    gap = table["confidence"] - table["accuracy"]
    reliability.bar(
        table["lower"][filled],
        gap.abs()[filled],
        bottom=np.minimum(table["confidence"], table["accuracy"])[filled],
        width=width[filled],
        align="edge",
        fill=False,
        hatch="//",
        edgecolor="tab:red",
        label="gap to mean confidence",
    )
    reliability.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    reliability.set_xlim(0, 1)
    reliability.set_ylim(0, 1)
    reliability.set_ylabel("accuracy")
    reliability.set_title(
        f"Test split reliability ({int(table['images'].sum())} images, "
        f"ECE {expected_calibration_error(table):.3f})"
    )
    reliability.legend(loc="upper left", fontsize=8)
    counts.bar(table["lower"], table["images"], width=width, align="edge", edgecolor="black")
    counts.set_xlabel("top-1 confidence")
    counts.set_ylabel("images")
    figure.tight_layout()
    return figure
