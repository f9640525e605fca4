"""The training loop, top to bottom: seed, data, model, optimizer, resume, then epochs.

`train(config, out_dir, on_epoch)` is the trainer's Python API. It reads the
training and validation splits only; the test split is scored separately, from
the best-dev checkpoint, by `trainer.evaluate`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainer import checkpoint, diagnostics
from trainer.config import ConfigError
from trainer.feedback import SOFT_PROCEDURES, FeedbackPolicy
from trainer.progress import log_line, progress_bar
from trainer.schedules import ScheduleState, gold_probability, soft_alpha
from trainer.tasks import build_task


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: every later step would train on garbage, so the run stops
    (a sweep's trial then fails) instead of finishing with a meaningless "best dev" (issue 7)."""


EpochCallback = Callable[[dict, Path], bool]
"""Called after every epoch with that epoch's record and the run directory (holding last.pt,
best.pt and metrics.json); returning True stops training (e.g. a pruner's decision)."""


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(requested)


def random_state(device: torch.device) -> dict:
    """The generators a run draws from, for last.pt: torch's CPU generator and, on CUDA, the devices' own
    (dropout masks, the gold/model coin and sampling draw from the latter there; issue 7)."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(saved: dict, device: torch.device) -> None:
    """Undoes `random_state`; a run resumed where fewer GPUs are visible restores the ones it sees."""
    torch.set_rng_state(saved["rng"])
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state_all(saved["cuda_rng"][: torch.cuda.device_count()])


def train(
    config,
    out_dir: Path | str,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    log: Callable[[str], None] = log_line,
) -> dict:
    """Trains one run (one config, one seed) into `out_dir`; resumes if `out_dir/last.pt` exists.

    Returns the content of `out_dir/metrics.json`: every epoch's figures and the best dev epoch.
    """
    out_dir = Path(out_dir)
    config_dict = config.model_dump(mode="json")
    device = resolve_device(config.device)
    if config.precision == "bf16" and device.type != "cuda":
        raise ConfigError(f"precision 'bf16' needs CUDA, but training runs on {device}; use precision: float32")
    # bf16 autocast covers the forward pass only; the decoder's output layer, feedback.py's α·s and soft vector
    # and the model's loss stay in float32 (METHOD.md: α·logits in float32 under mixed precision).
    mixed_precision = config.precision == "bf16"
    torch.manual_seed(config.seed)

    resumed = checkpoint.load_resume_state(out_dir, config_dict)
    task = build_task(config, resumed["vocabularies"] if resumed else None, log=log)
    train_set, dev_set = task.read_split("train"), task.read_split("dev")
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: bad input (config, checkpoint, data) leaves no folder

    model = task.build_model().to(device)
    optim = config.optim
    optimizer_class = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optim.optimizer]
    # fused: one kernel per update instead of one per tensor; on CPU the 1.5M-parameter NER word embedding's Adam
    # update drops from about 11 ms to 1.3 ms (issue 10), with the same arithmetic.
    optimizer = optimizer_class(model.parameters(), lr=optim.lr, fused=True)
    procedure = config.procedure
    feedback = FeedbackPolicy(procedure.name, model.excluded_ids, procedure.soft_top_k)
    uses_alpha = procedure.name in SOFT_PROCEDURES
    schedule = ScheduleState()
    if config.diagnostics.enabled:  # a fixed batch of dev sentences, the same every epoch
        first = dev_set[: config.diagnostics.sentences]
        diagnostic_batch = task.batches(first, len(first), shuffle=False)[0].to(device)
    history: list[dict] = []
    best: dict = {"epoch": None, "dev_score": float("-inf")}

    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        schedule = ScheduleState.from_state_dict(resumed["schedule"])
        history, best = resumed["history"], resumed["best"]
        restore_random_state(resumed, device)
        log(f"Resuming {out_dir} after epoch {schedule.epoch} (step {schedule.step})")

    def payload(**extra) -> dict:
        return {"config": config_dict, "vocabularies": task.vocabularies, "model": model.state_dict(), **extra}

    while schedule.epoch < optim.epochs:
        started = time.perf_counter()
        model.train()
        alpha = soft_alpha(procedure.alpha, schedule)
        loss_sum, token_count, gold_sum = 0.0, 0, 0.0
        batches = task.training_batches(train_set, optim.batch_size)
        bar = progress_bar(batches, f"epoch {schedule.epoch + 1}/{optim.epochs}", enabled=progress)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for batch in bar:
            batch = batch.to(device)
            epsilon = gold_probability(procedure, schedule)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision):
                _, loss = model(batch.src, batch.src_lengths, batch.targets, feedback, epsilon, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            optimizer.step()
            schedule.step += 1
            step_loss = loss.item()
            if not math.isfinite(step_loss):
                raise TrainingDiverged(
                    f"training diverged: the training loss is {step_loss} at epoch {schedule.epoch + 1}, optimizer "
                    f"step {schedule.step}. Lower optim.lr (now {optim.lr:g}) and start a new run."
                )
            tokens = int((batch.targets != model.pad_id).sum())
            loss_sum += step_loss * tokens
            token_count += tokens
            gold_sum += epsilon
            bar.set_postfix(loss=f"{step_loss:.3f}", eps=f"{epsilon:.3f}")

        peak_memory = {}
        if device.type == "cuda":
            peak_memory["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        dev_scores = task.score(model, dev_set, device)
        schedule.end_epoch()
        record = {
            "epoch": schedule.epoch,
            "train_loss": loss_sum / max(token_count, 1),
            "gold_probability": gold_sum / max(len(batches), 1),
            **({"alpha": alpha} if uses_alpha else {}),  # ce and the hard procedures have no α
            **{f"dev_{name}": value for name, value in dev_scores.items()},
            "dev_score": dev_scores[task.metric],
            "seconds": time.perf_counter() - started,
            "steps": schedule.step,
            **peak_memory,  # CUDA only: the training steps' peak allocated memory
        }
        if config.diagnostics.enabled:
            record.update(diagnostics.measure(model, diagnostic_batch, feedback, alpha, config.diagnostics.draws))
        history.append(record)
        if record["dev_score"] > best["dev_score"]:
            best = {"epoch": record["epoch"], "dev_score": record["dev_score"]}
            checkpoint.save(out_dir / checkpoint.BEST, payload(epoch=record["epoch"], dev_score=record["dev_score"]))
        checkpoint.save(
            out_dir / checkpoint.LAST,
            payload(
                optimizer=optimizer.state_dict(),
                schedule=schedule.state_dict(),
                history=history,
                best=best,
                **random_state(device),
            ),
        )
        write_metrics(out_dir, config_dict, task.metric, history, best)
        shown_alpha = f"alpha {alpha:.3g}  " if uses_alpha else ""
        log(
            f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  eps {record['gold_probability']:.4f}  "
            f"{shown_alpha}dev {task.metric} {record['dev_score']:.2f}  ({record['seconds']:.1f}s)"
        )
        if on_epoch is not None and on_epoch(record, out_dir):
            log(f"stopped after epoch {record['epoch']} at the caller's request")
            break
    return write_metrics(out_dir, config_dict, task.metric, history, best)


def write_metrics(out_dir: Path, config_dict: dict, metric: str, history: list[dict], best: dict) -> dict:
    summary = {
        "config": config_dict,
        "metric": metric,
        "epochs": history,
        "best_epoch": best["epoch"],
        "best_dev_score": best["dev_score"] if best["epoch"] is not None else None,
    }
    partial = out_dir / "metrics.json.partial"
    partial.write_text(json.dumps(summary, indent=2, allow_nan=False))  # bare NaN/Infinity is not JSON
    partial.replace(out_dir / "metrics.json")
    return summary
