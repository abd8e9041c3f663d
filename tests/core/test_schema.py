"""The manifest schema, split names and statuses are defined once, in core.schema.

Elsewhere they are imported: a module that spells out the split names, the statuses or the
manifest's columns as a collection (or the columns' types as a dict), or compares a value with
a split name or status written as a literal, redefines them.
"""

import ast

import pytest
from helpers import module_file, project_modules

from prodcls_pipeline.core import schema

SCHEMA_MODULE = "prodcls_pipeline.core.schema"
NAMES = {*schema.SPLITS, *schema.STATUSES}


def test_the_schema_derives_its_parts_from_one_list() -> None:
    assert tuple(schema.MANIFEST_DTYPES) == schema.MANIFEST_COLUMNS
    assert schema.INTEGER_COLUMNS == ("width", "height", "bytes")
    assert schema.PINNED_SPLITS == ("", "train", "val", "test")
    assert set(schema.SPLIT_COLUMNS) - {"split"} <= set(schema.MANIFEST_COLUMNS)


def _redefinitions(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            columns = values & set(schema.MANIFEST_COLUMNS)
            if len(values & NAMES) >= 2 or len(columns) >= len(schema.MANIFEST_COLUMNS) // 2:
                found.append(f"line {node.lineno}: {sorted(map(str, values))}")
        elif isinstance(node, ast.Dict):
            keys = {key.value for key in node.keys if isinstance(key, ast.Constant)}
            typed = all(isinstance(value, ast.Constant) for value in node.values)
            if typed and keys >= set(schema.MANIFEST_COLUMNS):
                found.append(f"line {node.lineno}: a type for each manifest column")
        elif isinstance(node, ast.Compare):
            literals = [
                operand.value
                for operand in [node.left, *node.comparators]
                if isinstance(operand, ast.Constant) and operand.value in NAMES
            ]
            found += [f"line {node.lineno}: compares with {value!r}" for value in literals]
    return found


@pytest.mark.parametrize(
    "module",
    [m for m in project_modules() if m.startswith("prodcls_pipeline.") and m != SCHEMA_MODULE],
)
def test_no_module_redefines_split_names_statuses_or_columns(module: str) -> None:
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    redefined = _redefinitions(tree)
    assert not redefined, f"{module} should import these from {SCHEMA_MODULE}: {redefined}"
