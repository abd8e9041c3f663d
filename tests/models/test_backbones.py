import glob
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from PIL import Image

from prodcls_pipeline.data.preprocessing import Preprocessing, eval_transform
from prodcls_pipeline.models import backbones
from prodcls_pipeline.models.backbones import (
    BACKBONES,
    IncompatibleWeightsError,
    MissingWeightsError,
    backbone_identity,
    create_backbone,
    preprocessing_for,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample" / "grocery-store-mini"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def test_unregistered_timm_backbone_loads_a_local_state_dict(tmp_path: Path) -> None:
    source = timm.create_model("resnet10t", pretrained=False)
    weights_file = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), weights_file)

    model, preprocessing = create_backbone("resnet10t", weights_file)

    source.reset_classifier(0)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), source.eval()(images))
    assert model.num_features == 512


def test_timm_preprocessing_comes_from_the_architecture() -> None:
    assert preprocessing_for("resnet10t") == Preprocessing(
        input_size=176,
        resize_size=201,  # floor(176 / crop_pct 0.875)
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bicubic",
    )


def test_registered_architecture_with_own_weights_uses_their_preprocessing(
    tmp_path: Path,
) -> None:
    weights_file = tmp_path / "lite0.pth"
    torch.save(timm.create_model("efficientnet_lite0", num_classes=0).state_dict(), weights_file)
    _, preprocessing = create_backbone("efficientnet_lite0", weights_file)
    assert preprocessing == preprocessing_for("efficientnet_lite0", weights_file)
    assert preprocessing.mean == IMAGENET_MEAN  # timm's metadata, not the TF port's 0.5


def test_torchvision_backbone_loads_a_saved_state_dict(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None).eval()
    weights_file = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), weights_file)

    model, preprocessing = create_backbone("torchvision/resnet18", str(weights_file))

    source.fc = torch.nn.Identity()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model(images)
        assert torch.equal(features, source(images))
    assert features.shape == (2, model.num_features) and model.num_features == 512
    assert preprocessing == Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


def test_torchvision_preprocessing_follows_the_weights_tag() -> None:
    assert preprocessing_for("torchvision/resnet50").resize_size == 232  # DEFAULT = V2
    assert preprocessing_for("torchvision/resnet50.IMAGENET1K_V1").resize_size == 256


def test_weights_of_another_architecture_list_the_mismatched_keys(tmp_path: Path) -> None:
    weights_file = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), weights_file)
    with pytest.raises(IncompatibleWeightsError) as error:
        create_backbone("resnet10t", weights_file)
    message = str(error.value)
    assert "missing keys: conv1.0.weight" in message
    assert "unexpected keys: conv_stem.weight" in message
    assert "classifier.weight" not in message  # the source's classifier is dropped, not reported


def test_weights_with_other_layer_shapes_list_the_shape_mismatches(tmp_path: Path) -> None:
    weights_file = tmp_path / "resnet18-conv5x5.pth"
    reshaped = torchvision.models.resnet18(weights=None)
    reshaped.conv1 = torch.nn.Conv2d(3, 64, kernel_size=5)
    torch.save(reshaped.state_dict(), weights_file)
    with pytest.raises(IncompatibleWeightsError, match=r"shape mismatches: conv1\.weight"):
        create_backbone("torchvision/resnet18", weights_file)


def test_a_file_that_is_not_a_state_dict_is_a_clear_error(tmp_path: Path) -> None:
    weights_file = tmp_path / "notes.pth"
    weights_file.write_text("not weights")
    with pytest.raises(IncompatibleWeightsError, match="not a PyTorch state-dict file"):
        create_backbone("resnet10t", weights_file)


def test_unregistered_backbone_without_weights_is_never_randomly_initialised() -> None:
    with pytest.raises(MissingWeightsError, match="train.weights_file"):
        create_backbone("resnet10t")
    with pytest.raises(MissingWeightsError, match="train.weights_file"):
        create_backbone("torchvision/resnet18")


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_backbone("resnet10t", tmp_path / "absent.pth")


def test_unknown_torchvision_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a torchvision classification model"):
        preprocessing_for("torchvision/resnet9000")


def test_backbone_identity_tells_weights_files_apart(tmp_path: Path) -> None:
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"weight": torch.zeros(2)}, first)
    torch.save({"weight": torch.ones(2)}, second)
    assert backbone_identity("efficientnet_lite0") == "efficientnet_lite0"
    assert backbone_identity("torchvision/resnet18") == "torchvision--resnet18"
    assert backbone_identity("resnet10t", first).startswith("resnet10t@")
    assert backbone_identity("resnet10t", first) != backbone_identity("resnet10t", second)
