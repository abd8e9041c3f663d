"""What a warm run trains on: the pairs the champion has not learnt and a replayed sample."""

import pandas as pd
import pytest

from prodcls_pipeline.training.replay import replay_rows, trained_on


def train_split(count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sha256": [f"{index:064x}" for index in range(count)],
            "label": ["apple" if index % 2 else "banana" for index in range(count)],
        }
    )


def test_new_images_and_per_new_learnt_ones_are_trained_on() -> None:
    train = train_split(100)
    learnt = trained_on(train.iloc[:90])

    rows, replay = replay_rows(train, learnt, per_new=2, seed=0)

    assert replay.as_dict() == {"new": 10, "replayed": 20, "available": 100}
    assert set(train["sha256"].iloc[90:]) <= set(rows["sha256"])
    assert len(rows) == 30
    assert rows.index.is_monotonic_increasing, "rows keep the split's order"


def test_a_relabelled_image_is_new() -> None:
    train = train_split(10)
    learnt = trained_on(train) | {train["sha256"].iloc[3]: "cherry"}

    rows, replay = replay_rows(train, learnt, per_new=0, seed=0)

    assert rows["sha256"].tolist() == [train["sha256"].iloc[3]]
    assert replay.new == 1 and replay.replayed == 0


def test_the_replayed_sample_is_seeded_and_capped_by_what_was_learnt() -> None:
    train = train_split(50)
    learnt = trained_on(train.iloc[:40])

    first, _ = replay_rows(train, learnt, per_new=1, seed=7)
    again, _ = replay_rows(train, learnt, per_new=1, seed=7)
    other, _ = replay_rows(train, learnt, per_new=1, seed=8)
    _, capped = replay_rows(train, learnt, per_new=100, seed=7)
    _, every = replay_rows(train, learnt, per_new=None, seed=7)

    assert first.equals(again) and not first.equals(other)
    assert capped.replayed == every.replayed == 40


@pytest.mark.parametrize("learnt", [None, "all"])
def test_without_a_record_or_anything_new_the_whole_split_is_trained_on(learnt: str | None) -> None:
    train = train_split(20)

    rows, replay = replay_rows(train, None if learnt is None else trained_on(train), 4, seed=0)

    assert rows.equals(train) and replay.new == 20 and replay.replayed == 0


def test_a_negative_replay_is_refused() -> None:
    with pytest.raises(ValueError, match="warm_start_replay"):
        replay_rows(train_split(4), {}, per_new=-1, seed=0)
