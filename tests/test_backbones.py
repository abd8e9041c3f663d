import glob
from pathlib import Path

import pytest
import torch
from PIL import Image

from prodcls_pipeline import backbones
from prodcls_pipeline.backbones import (
    BACKBONES,
    MissingWeightsError,
    Preprocessing,
    create_backbone,
    eval_transform,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "grocery-store-mini"


def test_lite0_loads_imagenet_weights_that_recognise_a_banana() -> None:
    banana = sorted(glob.glob(str(SAMPLE / "train" / "Fruit" / "Banana" / "*.jpg")))[0]
    features, preprocessing = create_backbone("efficientnet_lite0")
    imagenet_head = torch.load(
        backbones.weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True
    )
    image = eval_transform(preprocessing)(Image.open(banana).convert("RGB"))[None]
    with torch.no_grad():
        embedding = features(image)
    logits = embedding @ imagenet_head["_fc.weight"].T + imagenet_head["_fc.bias"]
    assert embedding.shape == (1, 1280)
    assert logits.argmax().item() == 954  # ImageNet "banana"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_registered_backbone_loads_its_weights(name: str) -> None:
    model, preprocessing = create_backbone(name)
    size = preprocessing.input_size
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, model.num_features)


def test_missing_weights_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = BACKBONES["efficientnet_lite0"]
    monkeypatch.setitem(
        BACKBONES,
        "efficientnet_lite0",
        backbones.BackboneSpec(
            spec.architecture, "no_such_weights_package", "X", spec.preprocessing
        ),
    )
    with pytest.raises(MissingWeightsError, match="no-such-weights-package"):
        create_backbone("efficientnet_lite0")


def test_unknown_backbone_is_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown backbone"):
        create_backbone("resnet9000")


def test_preprocessing_round_trips_and_eval_transform_normalises() -> None:
    preprocessing = BACKBONES["efficientnet_lite0"].preprocessing
    assert Preprocessing.from_dict(preprocessing.to_dict()) == preprocessing
    tensor = eval_transform(preprocessing)(Image.new("RGB", (300, 200), (255, 0, 0)))
    assert tensor.shape == (3, 224, 224)
    assert tensor[0].min() == pytest.approx(1.0) and tensor[1].max() == pytest.approx(-1.0)
