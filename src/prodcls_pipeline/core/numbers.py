"""How many decimals each kind of reported number keeps, so every stage rounds alike."""

# Scores and shares (top-1, F1, agreement, ECE) keep four decimals: a one-image change in a
# test split of a few thousand images still shows.
METRIC_DIGITS = 4
# Sizes and timings are noisy past two decimals.
MEASURE_DIGITS = 2


def round_metric(value: float) -> float:
    """A score or share as reported: a plain float with `METRIC_DIGITS` decimals."""
    return round(float(value), METRIC_DIGITS)


def round_measure(value: float) -> float:
    """A size or a timing as reported: a plain float with `MEASURE_DIGITS` decimals."""
    return round(float(value), MEASURE_DIGITS)
