"""`python -m trainer.landscape CHECKPOINT --out DIR`: the paper's Figure 1 on a trained model.

The training objective along one direction in parameter space, θ(t) = θ + t·d, on a fixed batch of dev
sentences, every step fed the model's own choice (ε = 0): hard greedy scheduled sampling (`ss_greedy`),
whose objective jumps wherever a greedy decision flips, and the α-soft argmax (`soft_greedy`) at several α,
continuous everywhere and closer to the hard one as α grows (§3.1). The direction is random and scaled
per parameter tensor to that tensor's norm (so t is a relative step, as in Li et al. 2018), fixed by
--seed. Dropout is off, so every curve is a function of t alone. Writes landscape.csv (t, each objective,
decisions changed) and landscape.png. Reads the dev split only.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.config import ConfigError
from trainer.evaluate import load_checkpoint_model
from trainer.feedback import FeedbackPolicy
from trainer.progress import log_line


@dataclass
class Landscape:
    steps: list[float]  # t
    hard: list[float]  # ss_greedy objective at each t
    soft: dict[float, list[float]]  # α → soft_greedy objective at each t
    decisions: list[torch.Tensor]  # the greedy choices fed back (B, T-1) at each t; -1 where none is fed

    def flips(self) -> list[int]:
        """Greedy decisions that differ from the previous t's, at each t (0 at the first)."""
        return [0] + [int((a != b).sum()) for a, b in zip(self.decisions, self.decisions[1:], strict=False)]


def random_direction(model: torch.nn.Module, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    direction = []
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator).to(parameter.device, parameter.dtype)
        direction.append(noise * parameter.norm() / noise.norm().clamp_min(1e-12))
    return direction


@torch.no_grad()
def landscape(model, batch, direction: list[torch.Tensor], steps: list[float], alphas: list[float]) -> Landscape:
    """The objectives at θ + t·d for each t in `steps`; θ is restored afterwards."""
    model.eval()  # dropout off: the objective is a deterministic function of the parameters
    hard_policy = FeedbackPolicy("ss_greedy", model.excluded_ids)
    soft_policy = FeedbackPolicy("soft_greedy", model.excluded_ids)
    original = [p.detach().clone() for p in model.parameters()]
    fed = batch.targets[:, 1:] != model.pad_id  # the choice at step i is fed to step i+1 where that is real
    result = Landscape(steps=list(steps), hard=[], soft={alpha: [] for alpha in alphas}, decisions=[])
    try:
        for t in steps:
            for parameter, start, d in zip(model.parameters(), original, direction, strict=True):
                parameter.copy_(start + t * d)
            logits, loss = model(batch.src, batch.src_lengths, batch.targets, hard_policy, 0.0, 1.0)
            result.hard.append(float(loss))
            masked = logits.index_fill(-1, torch.tensor(model.excluded_ids, device=logits.device), float("-inf"))
            result.decisions.append(masked[:, :-1].argmax(-1).masked_fill(~fed, -1).cpu())
            for alpha in alphas:
                result.soft[alpha].append(float(model(batch.src, batch.src_lengths, batch.targets, soft_policy,
                                                      0.0, alpha)[1]))  # fmt: skip
    finally:
        for parameter, start in zip(model.parameters(), original, strict=True):
            parameter.copy_(start)
    return result


def write_csv(result: Landscape, path: Path) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["t", "ss_greedy", *(f"soft_greedy_alpha_{alpha:g}" for alpha in result.soft), "flips"])
        for index, t in enumerate(result.steps):
            soft = [result.soft[alpha][index] for alpha in result.soft]
            writer.writerow([f"{t:.6g}", f"{result.hard[index]:.6g}", *(f"{v:.6g}" for v in soft),
                             result.flips()[index]])  # fmt: skip
    return path


def plot(result: Landscape, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for alpha, values in result.soft.items():
        axis.plot(result.steps, values, linewidth=1.2, label=f"α-soft argmax, α = {alpha:g}")
    axis.plot(result.steps, result.hard, color="black", linewidth=1.0, label="hard greedy scheduled sampling")
    flipped = [t for t, count in zip(result.steps, result.flips(), strict=True) if count]
    bottom = min(min(result.hard), *(min(v) for v in result.soft.values()))
    axis.plot(flipped, [bottom] * len(flipped), "|", color="C3", markersize=10, label="a greedy decision flips")
    axis.set(xlabel="t (step along a random direction, relative to each tensor's norm)", ylabel="training loss",
             title=title)  # fmt: skip
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.landscape",
        description="Figure 1 of Goyal et al. (2017) on a trained model: the training objective along a random "
        "direction in parameter space for hard greedy scheduled sampling and the α-soft argmax at several α, "
        "with the points where a greedy decision flips. Writes DIR/landscape.csv and DIR/landscape.png.",
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint, e.g. runs/ner-ce/best.pt")
    parser.add_argument("--out", type=Path, required=True, help="folder for landscape.csv and landscape.png")
    parser.add_argument("--sentences", type=int, default=32, help="dev sentences in the batch (default 32)")
    parser.add_argument("--span", type=float, default=0.05, help="t runs from -SPAN to SPAN (default 0.05)")
    parser.add_argument("--points", type=int, default=201, help="values of t (default 201)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="α of the soft curves")
    parser.add_argument("--seed", type=int, default=0, help="seed of the direction (default 0)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    try:
        if args.sentences < 1 or args.points < 2 or args.span <= 0 or min(args.alphas) <= 0:
            raise ConfigError("--sentences ≥ 1, --points ≥ 2, --span > 0 and every α > 0")
        _, task, model, device = load_checkpoint_model(args.checkpoint, args.device, log_line)
        sentences = task.read_split("dev")[: args.sentences]
        batch = task.batches(sentences, len(sentences), shuffle=False)[0].to(device)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    steps = [args.span * (2 * i / (args.points - 1) - 1) for i in range(args.points)]
    result = landscape(model, batch, random_direction(model, args.seed), steps, args.alphas)
    args.out.mkdir(parents=True, exist_ok=True)
    table = write_csv(result, args.out / "landscape.csv")
    shown = "/".join(args.checkpoint.resolve().parts[-3:])  # run folder, checkpoint folder, file
    figure = plot(result, args.out / "landscape.png", f"{shown}: {len(sentences)} dev sentences")
    print(
        f"{sum(1 for c in result.flips() if c)} of {args.points} steps flip a greedy decision; wrote {table}, {figure}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
