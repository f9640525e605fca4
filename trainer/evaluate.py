"""Scores a saved checkpoint on one split. The only code path that opens the test split.

python -m trainer.evaluate runs/a/best.pt --split test [--beam 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import get_args

from trainer import checkpoint
from trainer.config import ConfigError, MtDataConfig, parse_config
from trainer.data.conll import DataFormatError
from trainer.data.fetch import FetchError
from trainer.progress import log_line
from trainer.tasks import build_task
from trainer.train import resolve_device


def evaluate_checkpoint(
    path: Path | str,
    split: str = "dev",
    device: str = "auto",
    log=log_line,
    beam_size: int = 1,
    corpus: str | None = None,
) -> dict:
    """Rebuilds the model from the checkpoint alone and scores it on `split` with hard greedy decoding,
    or, for MT, with beam search of `beam_size` > 1. `corpus` (MT): score on that fetched data set's split
    instead of the one the run was trained for (a model trained on Ding with the catalogs added, scored on the
    catalogs' own test split)."""
    payload, task, model, torched_device = load_checkpoint_model(path, device, log, corpus)
    if beam_size != 1 and not getattr(task, "supports_beam", False):
        raise ConfigError(f"beam search applies to translation (task mt), not to task {task.config.task}")
    search = {"beam_size": beam_size} if beam_size != 1 else {}
    scores = task.score(model, task.read_split(split), torched_device, **search)
    result = {"checkpoint": str(path), "split": split, "epoch": payload.get("epoch"), "metric": task.metric}
    return {**result, **({"corpus": corpus} if corpus else {}), **search, **scores}


def sentence_statistics(path: Path | str, split: str = "dev", device: str = "auto", log=log_line) -> dict:
    """The checkpoint's per-sentence metric statistics on `split` under hard greedy decoding (an (N, S) array,
    see trainer.metrics): what a bootstrap over sentences resamples. {"metric", "statistics", "checkpoint"}."""
    _, task, model, torched_device = load_checkpoint_model(path, device, log)
    statistics = task.statistics(model, task.read_split(split), torched_device)
    return {"checkpoint": str(path), "split": split, "metric": task.metric, "statistics": statistics}


def load_checkpoint_model(path: Path | str, device: str, log, corpus: str | None = None):
    """(payload, task, model on its device, device), rebuilt from the checkpoint alone; `corpus` replaces the
    data set it reads (MT; its training data is never read here)."""
    payload = checkpoint.load(path)
    config = parse_config(payload["config"], source=f"{path} (config)")
    if corpus is not None:
        if config.task != "mt":
            raise ConfigError(f"--corpus applies to translation (task mt), not to task {config.task}")
        tree = config.model_dump(mode="json")
        tree["data"].update(dataset=corpus, extra_training=[], path=None, encoding="utf-8")
        config = parse_config(tree, source=f"{path} (config, with --corpus {corpus})")
    task = build_task(config, payload["vocabularies"], log=log)
    model = task.build_model()
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, AttributeError):  # what load_state_dict raises for missing, extra or odd entries
        raise checkpoint.CheckpointError(
            f"{path}: its weights do not fit the model that its config and vocabularies describe"
        ) from None
    torched_device = resolve_device(device)
    return payload, task, model.to(torched_device), torched_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.evaluate",
        description="Score a checkpoint written by `python -m trainer` (normally DIR/best.pt, the best-dev "
        "epoch) on a data split with hard greedy decoding. This is the only command that reads the test split.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint file, e.g. runs/ner-ce/best.pt")
    parser.add_argument("--split", choices=("dev", "test"), default="dev", help="split to score (default: dev)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    parser.add_argument("--out", type=Path, default=None, help="also write the scores to this JSON file")
    parser.add_argument(
        "--beam",
        type=int,
        default=1,
        metavar="N",
        help="MT only: beam search with N hypotheses instead of greedy decoding (default 1: greedy, as the paper)",
    )
    parser.add_argument(
        "--corpus",
        choices=[name for name in get_args(MtDataConfig.model_fields["dataset"].annotation) if name != "files"],
        default=None,
        help="MT only: score on this fetched corpus's split instead of the run's own data set (e.g. a model trained "
        "on Ding with the message catalogs added, on the catalogs' test split)",
    )
    args = parser.parse_args(argv)
    try:
        if args.beam < 1:
            raise ConfigError(f"--beam {args.beam}: must be at least 1")
        if args.out is not None and (args.out.is_dir() or not args.out.parent.is_dir()):
            raise ConfigError(f"--out {args.out}: must name a file in an existing folder")
        result = evaluate_checkpoint(args.checkpoint, args.split, args.device, beam_size=args.beam, corpus=args.corpus)
    except (ConfigError, DataFormatError, FileNotFoundError, FetchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
