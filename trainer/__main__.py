"""`python -m trainer CONFIG.yaml --out DIR [--set key=value ...]`: train one run (one config, one seed)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from trainer import checkpoint
from trainer.checkpoint import CheckpointError
from trainer.config import ConfigError, load_config
from trainer.data.conll import DataFormatError
from trainer.data.fetch import FetchError
from trainer.train import TrainingDiverged, train

EPILOG = """\
examples:
  python -m trainer configs/ner.yaml --out runs/ner-ce
  python -m trainer configs/ner.yaml --out runs/ner-soft --set procedure.name=soft_greedy --set seed=2
  python -m trainer.evaluate runs/ner-soft/best.pt --split test
  python -m trainer configs/mt_ding.yaml --out runs/mt-soft --set procedure.name=soft_sample
  python -m trainer.evaluate runs/mt-soft/best.pt --split test --beam 5

Writes DIR/metrics.json (every epoch: train loss, gold probability eps, alpha for the soft
procedures, dev score, seconds; and the best dev epoch), DIR/best.pt (best-dev checkpoint)
and DIR/last.pt (resume state). Rerunning the same command on the same DIR resumes after the
last finished epoch, schedules included: Ctrl-C or SIGTERM stops a run at once (exit status 130 or 143)
and loses only the epoch in progress. Training never reads the test split.
Every config key, its default and meaning: python -m trainer.describe (or configs/*.yaml).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train one seq2seq model with one of the procedures of Goyal et al. (2017): ce, ss_greedy, "
        "ss_sample, soft_greedy, soft_sample.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="YAML config (see configs/)")
    parser.add_argument("--out", type=Path, required=True, help="run directory for metrics and checkpoints")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field by its dotted path, e.g. procedure.k=10 (repeatable; VALUE is YAML)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar within epochs (shown only on a terminal)"
    )
    args = parser.parse_args(argv)
    terminated: list[int] = []

    def stop(signum, frame) -> None:  # SIGTERM (kill, systemd, Kubernetes) stops the run as Ctrl-C does
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if args.out.exists() and not args.out.is_dir():
            raise ConfigError(f"--out {args.out}: a file, not a run directory")
        config = load_config(args.config, args.overrides)
        summary = train(config, args.out, progress=not args.no_progress)
    except (ConfigError, DataFormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FetchError as error:
        print(
            f"error: {error}\nSet data.dataset: files and point the data paths at local copies instead "
            "(python -m trainer.describe TASK lists them).",
            file=sys.stderr,
        )
        return 1
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted {resume_point(args.out)}; rerun the same command to resume", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"best dev {summary['metric']} {summary['best_dev_score']:.2f} at epoch {summary['best_epoch']}; "
        f"wrote {args.out / 'metrics.json'} and {args.out / 'best.pt'}"
    )
    return 0


def resume_point(out: Path) -> str:
    """Where a rerun goes on from: the epoch of the resume state in last.pt."""
    if not (out / checkpoint.LAST).exists():
        return "before the first epoch ended"
    try:
        return f"after epoch {checkpoint.load(out / checkpoint.LAST, required=('schedule',))['schedule']['epoch']}"
    except CheckpointError:
        return "with an unreadable last.pt"


if __name__ == "__main__":
    sys.exit(main())
