"""An area's public API, named in its `__init__.py` and imported on first use (PEP 562).

Importing an area must stay as cheap as importing the one module a caller needs: the data area's
decoder must not pull in torchvision, nor the validation report Great Expectations.
"""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, api: dict[str, list[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and `__getattr__` for `package`, whose `api` maps each module (relative to the
    package) to the public names it defines."""
    home = {name: module for module, names in api.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{home[name]}"), name)

    return sorted(home), __getattr__
