"""The train stage's nodes: a warm run embeds only the views of the images it trains on."""

from pathlib import Path

import pandas as pd
from helpers import FakeImageStore, project_params, synthetic_images

from prodcls_pipeline.framework.params import AugmentParams, TrainParams
from prodcls_pipeline.pipelines.augment.nodes import make_augmentation_policy
from prodcls_pipeline.pipelines.train.nodes import (
    embed_images,
    select_training_images,
    start_training,
)
from prodcls_pipeline.training.embedding_cache import EmbeddingStore
from prodcls_pipeline.training.replay import TRAINED_ON
from prodcls_pipeline.training.warm_start import CHAMPION, COLD, WarmStart

TRAIN_IMAGES, VAL_IMAGES, LEARNT = 10, 2, 8


def splits(store: FakeImageStore) -> pd.DataFrame:
    sha256s = sorted(store.images)
    return pd.DataFrame(
        {
            "sha256": sha256s,
            "label": ["apple" if index % 2 else "banana" for index in range(len(sha256s))],
            "coarse_label": "fruit",
            "split": ["train"] * TRAIN_IMAGES + ["val"] * VAL_IMAGES,
        }
    )


def test_a_warm_run_embeds_the_views_of_new_and_replayed_images_only(tmp_path: Path) -> None:
    params = project_params()
    train = TrainParams.model_validate(
        {**params["train"], "mode": "head", "views_per_image": 2, "warm_start_replay": 1.0}
    )
    policy = make_augmentation_policy(AugmentParams.model_validate(params["augment"]), seed=0)
    store = FakeImageStore(synthetic_images(TRAIN_IMAGES + VAL_IMAGES, seed=0))
    table = splits(store)
    learnt = table[table["split"] == "train"].iloc[:LEARNT]
    warm = WarmStart(
        CHAMPION,
        1,
        "run",
        "b" * 64,
        checkpoint={TRAINED_ON: dict(zip(learnt["sha256"], learnt["label"], strict=True))},
    )

    warm_rows, warm_replay = select_training_images(table, warm, train, 0)
    cold_rows, cold_replay = select_training_images(table, WarmStart(COLD), train, 0)
    warm_counts = embed_images(
        table, warm_rows, store, EmbeddingStore(tmp_path / "warm"), policy, train, 0
    )
    cold_counts = embed_images(
        table, cold_rows, store, EmbeddingStore(tmp_path / "cold"), policy, train, 0
    )

    new = TRAIN_IMAGES - LEARNT
    assert warm_replay == {"new": new, "replayed": new, "available": TRAIN_IMAGES}
    assert cold_replay == {"new": TRAIN_IMAGES, "replayed": 0, "available": TRAIN_IMAGES}
    assert set(table.iloc[LEARNT:TRAIN_IMAGES]["sha256"]) <= set(warm_rows["sha256"])
    assert warm_counts == {"clean_computed": 12, "augmented_computed": 2 * (new + new)}
    assert cold_counts == {"clean_computed": 12, "augmented_computed": 2 * TRAIN_IMAGES}


def test_warm_start_none_starts_from_scratch_without_a_registry() -> None:
    start = start_training(TrainParams.model_validate(project_params()["train"]), "no-such-model")
    assert not start.active and start.policy == COLD
