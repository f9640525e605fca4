"""`python -m trainer.describe [ner|mt]`: every config key with its default and description, as commented YAML.

Generated from the pydantic models, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
from typing import get_args

import yaml
from pydantic import BaseModel

from trainer.config import TASK_CONFIGS


def commented_yaml(model: type[BaseModel], indent: int = 0) -> list[str]:
    lines = []
    pad = "  " * indent
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{pad}{name}:  # {field.description or ''}".rstrip())
            lines.extend(commented_yaml(annotation, indent + 1))
            continue
        optional_model = next(
            (arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)), None
        )
        default = field.get_default(call_default_factory=True)
        if optional_model is not None and default is None:  # e.g. data.subwords: off unless given its keys
            lines.append(f"{pad}{name}: null  # {field.description or ''} Its keys, when set:".rstrip())
            lines.extend(f"{pad}#{line[len(pad) + 1 :]}" for line in commented_yaml(optional_model, indent + 1))
            continue
        value = yaml.safe_dump(default if not hasattr(default, "__fspath__") else str(default)).strip()
        value = value.removesuffix("\n...").removesuffix("...").strip()
        lines.append(f"{pad}{name}: {value}  # {field.description or ''}".rstrip())
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.describe", description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", default="ner", choices=sorted(TASK_CONFIGS), help="task (default ner)")
    args = parser.parse_args(argv)
    print("\n".join(commented_yaml(TASK_CONFIGS[args.task])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
