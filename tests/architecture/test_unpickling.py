"""Nothing a drop, a registry or a client supplies is unpickled: every `torch.load` in the
source is `weights_only=True` (tensors and plain containers only), and no module calls a pickle
loader, but where the project reads back files its own run wrote (named below, with why)."""

import ast
from pathlib import Path

from helpers import REPO

SOURCE = REPO / "src"
PICKLE_MODULES = {"pickle", "cloudpickle", "dill", "joblib"}
PICKLE_LOADERS = {"load", "loads"}
# Files a run writes for itself in its own work folder and reads straight back.
OWN_FILES = {
    "prodcls_pipeline/training/distributed.py": "the torchrun spec and result of this very run",
}


def calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def dotted(function: ast.expr) -> tuple[str, str] | None:
    if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
        return function.value.id, function.attr
    return None


def weights_only(call: ast.Call) -> bool:
    return any(
        keyword.arg == "weights_only"
        and isinstance(keyword.value, ast.Constant)
        and keyword.value.value is True
        for keyword in call.keywords
    )


def unsafe_calls(path: Path) -> list[str]:
    """`line: call` for each unpickling load in the module at `path`."""
    found = []
    for call in calls(path):
        name = dotted(call.func)
        if name == ("torch", "load") and not weights_only(call):
            found.append(f"{call.lineno}: torch.load without weights_only=True")
        if name and name[0] in PICKLE_MODULES and name[1] in PICKLE_LOADERS:
            found.append(f"{call.lineno}: {name[0]}.{name[1]}")
    return found


def test_nothing_is_unpickled_but_weights() -> None:
    found = [
        f"{path.relative_to(SOURCE)}:{line}"
        for path in sorted(SOURCE.rglob("*.py"))
        if path.relative_to(SOURCE).as_posix() not in OWN_FILES
        for line in unsafe_calls(path)
    ]
    assert found == []


def test_the_scan_sees_what_it_forbids(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "import pickle, torch\n"
        "torch.load('a.pt')\n"
        "torch.load('b.pt', weights_only=False)\n"
        "torch.load('c.pt', weights_only=True)\n"
        "pickle.loads(b'')\n"
    )
    assert [line.split(":")[0] for line in unsafe_calls(module)] == ["2", "3", "5"]


def test_every_exempt_file_exists() -> None:
    assert all((SOURCE / relative).is_file() for relative in OWN_FILES)
