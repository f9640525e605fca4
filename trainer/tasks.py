"""The task registry: config -> task object (data, vocabularies, model, metric)."""

from __future__ import annotations

from trainer.mt import MtTask
from trainer.ner import NerTask
from trainer.progress import log_line

TASKS = {"ner": NerTask, "mt": MtTask}  # each names its metric (`metric`), which dev_score reports


def build_task(config, vocabularies: dict[str, list[str]] | None = None, log=log_line):
    """Vocabularies come from the checkpoint when resuming or evaluating, else from the training split."""
    return TASKS[config.task](config, vocabularies, log=log)
