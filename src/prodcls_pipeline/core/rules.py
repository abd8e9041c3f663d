"""Rules read from one section of params.yaml, built and checked one way.

A rule is a frozen dataclass whose fields are the keys of its section. `from_params` takes the
section's mapping as a node receives it and refuses a missing key, an unknown key (a typo would
otherwise be silently ignored) or a value of the wrong type, naming the section and the key.
"""

import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints


class RuleParamsError(ValueError):
    """A params section that does not describe its rule: the message names the section and key."""


@dataclass(frozen=True)
class Rule:
    """Base of every rule built from params: subclasses name their section in `params_section`."""

    params_section: ClassVar[str]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """The rule of `params` (its section of params.yaml), every key present and known."""
        if not isinstance(params, Mapping):
            raise RuleParamsError(
                f"{cls.params_section} must be a mapping of "
                f"{', '.join(field.name for field in fields(cls))}, got {params!r}"
            )
        expected = [field.name for field in fields(cls)]
        missing = [name for name in expected if name not in params]
        unknown = sorted(str(name) for name in params if name not in expected)
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        if problems:
            raise RuleParamsError(
                f"{cls.params_section}: {'; '.join(problems)} "
                f"(expected keys: {', '.join(expected)})"
            )
        return cls(**{name: params[name] for name in expected})

    def __post_init__(self) -> None:
        for name, annotation in get_type_hints(type(self)).items():
            if get_origin(annotation) is ClassVar:
                continue
            value = _checked(f"{self.params_section}.{name}", annotation, getattr(self, name))
            object.__setattr__(self, name, value)


def _checked(key: str, annotation: Any, value: Any) -> Any:
    """`value` as `annotation` wants it (an int where a float is wanted becomes that float)."""
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise RuleParamsError(f"{key} must be one of {choices}, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise RuleParamsError(f"{key} must be a number, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise RuleParamsError(f"{key} must be an integer, got {value!r}")
    if isinstance(annotation, type | types.UnionType) and not isinstance(value, annotation):
        raise RuleParamsError(f"{key} must be of type {_type_name(annotation)}, got {value!r}")
    return value


def _type_name(annotation: type | types.UnionType) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)
