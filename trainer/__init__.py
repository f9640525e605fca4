"""dss-sweep trainer: the five training procedures of Goyal et al. (2017) for seq2seq models.

The Python API that the orchestrator (and anyone else) uses:

    from trainer import load_config, train, evaluate_checkpoint
    config = load_config("configs/ner.yaml", ["procedure.name=soft_greedy"])
    summary = train(config, "runs/a", on_epoch=lambda record, run_dir: False)
    test = evaluate_checkpoint("runs/a/best.pt", split="test")
    per_sentence = sentence_statistics("runs/a/best.pt", split="test")  # for bootstrap intervals

It imports neither Ray nor MLflow.
"""

from trainer.config import PROCEDURES, ConfigError, load_config, parse_config
from trainer.train import TrainingDiverged, train

__all__ = [
    "PROCEDURES",
    "ConfigError",
    "TrainingDiverged",
    "evaluate_checkpoint",
    "load_config",
    "parse_config",
    "sentence_statistics",
    "train",
]


def __getattr__(name: str):
    """trainer.evaluate's functions are imported on first use: importing trainer.evaluate here would make
    `python -m trainer.evaluate` run a module already in sys.modules, which Python warns about on every call."""
    if name in ("evaluate_checkpoint", "sentence_statistics"):
        from trainer import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
