"""`python -m orchestrator.describe`: every search-space key with its default and meaning.

Generated from the pydantic models in orchestrator/space.py, so it cannot drift from what
the sweep accepts. Trainer keys (base, fixed, axes, where) are listed by `python -m trainer.describe`.
"""

from __future__ import annotations

import argparse
import sys
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from orchestrator.space import SearchSpace


def models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through unions, Annotated and containers)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for argument in typing.get_args(annotation):
        for model in models_in(argument):
            if model not in found:
                found.append(model)
    return found


def describe(model: type[BaseModel], indent: int = 0) -> list[str]:
    lines = []
    pad = "  " * indent
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "required" if default is PydanticUndefined else f"default {_short(default)}"
        lines.append(f"{pad}{name}: {field.description or ''} ({shown})")
        variants = models_in(field.annotation)
        for variant in variants:
            if len(variants) > 1:
                lines.append(f"{pad}  - {variant.__name__}:")
            lines.extend(describe(variant, indent + 2 if len(variants) > 1 else indent + 1))
    return lines


def _short(value) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return repr(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.describe", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print("\n".join(describe(SearchSpace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
