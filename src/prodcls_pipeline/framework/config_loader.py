"""Kedro reads its parameters from the project's params.yaml, the file DVC tracks."""

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

PARAMS_FILE = "params.yaml"


class ParamsFileConfigLoader(OmegaConfigLoader):
    """An OmegaConfigLoader whose `parameters` come from `<project>/params.yaml`.

    DVC stages depend on keys of params.yaml; keeping Kedro's parameters in the same file
    means there is no second copy in conf/ to drift. Runtime `--params` still override.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key != "parameters":
            return super().__getitem__(key)
        params = OmegaConf.load(Path(self.conf_source).resolve().parent / PARAMS_FILE)
        merged = OmegaConf.merge(params, OmegaConf.create(self.runtime_params or {}))
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
