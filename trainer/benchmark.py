"""`python -m trainer.benchmark memory|speed`: the cost of each procedure, as ratios to `ce` measured in the same run.

`speed`: seconds per training step (forward, backward, optimizer) of the NER or MT
model on random token ids, every position fed the model's own choice (ε = 0). The
procedures are timed in interleaved rounds within one process, so that a change in
machine load hits all of them alike; the median over rounds is reported.

`memory`: memory of one MT training step per procedure.

At vocabulary 32000 the soft procedures keep a (B, V) softmax alive for backward at
every decoder step, B×T×V in all (METHOD.md: about 0.4 GB at B=64, T=50 in
float32); `procedure.soft_top_k` keeps k of the V entries. This measures one
forward + backward pass on random token ids at a given vocabulary, batch and length
(the optimizer step is left out: its state is the same for every procedure), every
position fed the model's own choice (ε = 0, the most the soft path can hold), α = 1.

Each row runs in a fresh process, so that no row inherits another's allocator state:
  saved MB  the tensors autograd keeps for backward at the end of the forward pass
            (parameters excluded, shared storage counted once); exact, any device.
  peak MB   CUDA: torch.cuda.max_memory_allocated during the step, less what was
            allocated before it. CPU: the process's peak resident set (ru_maxrss)
            less its resident set before the step; approximate, since the C allocator
            may reuse memory freed earlier.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.config import PROCEDURES, MtModelConfig, NerModelConfig
from trainer.feedback import SOFT_PROCEDURES, FeedbackPolicy
from trainer.model import build_mt_model, build_ner_model
from trainer.train import resolve_device
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary

UNROLLED_CE = "ce_unrolled"  # speed table: ce forced through the step-by-step unroll, for reference


@dataclass(frozen=True)
class MatMul:
    """`times` products (m × k) @ (k × n) in a forward pass; backward adds (m × n) @ (n × k) and (k × m) @ (m × n)."""

    m: int
    k: int
    n: int
    times: int = 1

    @property
    def flops(self) -> int:
        return 3 * 2 * self.m * self.k * self.n * self.times  # forward and the two backward products


def ner_matmuls(sizes: NerModelConfig, batch: int, length: int, tags: int, soft: bool) -> list[MatMul]:
    """The matrix products of one NER training step (§5 model), as `trainer.model` computes them: per encoder
    direction the input projection of all positions at once and the recurrence step by step; the decoder's the
    same; the output layer over all positions; the soft procedures' Σ_y e(y) p(y) at every position."""
    gates, rows = 4 * sizes.encoder_hidden, batch * length
    encoder = [MatMul(rows, sizes.embedding_dim, gates), MatMul(batch, sizes.encoder_hidden, gates, length)] * 2
    context = 2 * sizes.encoder_hidden
    hidden = sizes.decoder_hidden
    decoder = [
        MatMul(batch, context, hidden),  # the bridge to the initial state
        MatMul(rows, sizes.embedding_dim + context, 4 * hidden),
        MatMul(batch, hidden, 4 * hidden, length),
        MatMul(rows, hidden + context, tags),
    ]
    choice = [MatMul(batch, tags, sizes.embedding_dim, length)] if soft else []
    return encoder + decoder + choice


def matmul_floor(products: list[MatMul], device: torch.device, repeats: int = 20) -> float:
    """Seconds that the products alone take, forward and backward, as bare torch.mm calls of the same shapes: the
    floor under any implementation of the step (the median over `repeats`)."""
    seconds = 0.0
    for product in products:
        a, b = torch.randn(product.m, product.k, device=device), torch.randn(product.k, product.n, device=device)
        g = torch.randn(product.m, product.n, device=device)
        calls = ((a, b), (g, b.t()), (a.t(), g))
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            for left, right in calls:
                torch.mm(left, right)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - started)
        seconds += sorted(timings)[len(timings) // 2] * product.times
    return seconds


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def forward_keeping_count(model: torch.nn.Module, forward) -> tuple[torch.Tensor, int]:
    """Runs `forward()` (returning the loss) and counts the bytes of the tensors autograd keeps for backward,
    parameters excluded and shared storage counted once."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = forward()
    return loss, sum(saved.values())


def measure_step(
    procedure: str, top_k: int | None, vocab: int, batch: int, length: int, hidden: int, device: torch.device
) -> dict:
    """One forward + backward pass of the MT model; returns saved and peak bytes and the seconds it took."""
    torch.manual_seed(0)
    words = Vocabulary([PAD, UNK, BOS, EOS] + [f"w{i}" for i in range(vocab - 4)])
    sizes = MtModelConfig(embedding_dim=hidden, encoder_hidden=hidden, decoder_hidden=hidden, attention_dim=hidden)
    model = build_mt_model(sizes, words, words).to(device)
    src = torch.randint(4, vocab, (batch, length), device=device)
    targets = torch.randint(4, vocab, (batch, length), device=device)
    src_lengths = torch.full((batch,), length)
    feedback = FeedbackPolicy(procedure, model.excluded_ids, top_k)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _resident_bytes()
    started = time.perf_counter()
    loss, saved_bytes = forward_keeping_count(
        model, lambda: model(src, src_lengths, targets, feedback, gold_probability=0.0, alpha=1.0)[1]
    )
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before  # ru_maxrss is in KiB on Linux
    return {"saved_bytes": saved_bytes, "peak_bytes": peak, "seconds": time.perf_counter() - started}


def speed_table(args: argparse.Namespace) -> list[str]:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    words = Vocabulary([PAD, UNK, BOS, EOS] + [f"w{i}" for i in range(args.vocab - 4)])
    if args.task == "ner":
        tags = Vocabulary([PAD, BOS] + [f"t{i}" for i in range(args.tags - 2)])
        model, targets_vocab = build_ner_model(NerModelConfig(), words, tags), tags
    else:
        sizes = MtModelConfig(
            embedding_dim=args.hidden, encoder_hidden=args.hidden, decoder_hidden=args.hidden, attention_dim=args.hidden
        )
        model, targets_vocab = build_mt_model(sizes, words, words), words
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as trainer.train
    src = torch.randint(4, len(words), (args.batch, args.length), device=device)
    targets = torch.randint(2, len(targets_vocab), (args.batch, args.length), device=device)
    src_lengths = torch.full((args.batch,), args.length)
    rows = _rows(args.top_k, args.procedures)
    if "ce" in args.procedures:
        rows.insert(1, (UNROLLED_CE, None))
    policies = {
        row: FeedbackPolicy("ce" if row[0] == UNROLLED_CE else row[0], model.excluded_ids, row[1]) for row in rows
    }

    def loss_of(row: tuple) -> torch.Tensor:
        if row[0] != UNROLLED_CE:
            return model(src, src_lengths, targets, policies[row], gold_probability=0.0, alpha=1.0)[1]
        # What ce cost before teacher forcing was fused: the same model through the step-by-step unroll.
        keys, mask, final = model.encode(src, src_lengths)
        logits = model.decoder.unrolled(keys, mask, final, targets, model.bos_id, policies[row], 1.0, 1.0)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=model.pad_id)

    def step(row: tuple) -> None:
        loss = loss_of(row)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    saved = {}
    for row in rows:  # warm-up (first-call allocations, kernel selection) and the memory kept for backward
        loss, saved[row] = forward_keeping_count(model, lambda row=row: loss_of(row))
        loss.backward()
        step(row)
    timings: dict[tuple, list[float]] = {row: [] for row in rows}
    for _ in range(args.rounds):
        for row in rows:
            started = time.perf_counter()
            for _ in range(args.steps):
                step(row)
            timings[row].append((time.perf_counter() - started) / args.steps)
    medians = {row: sorted(times)[len(times) // 2] for row, times in timings.items()}
    base, base_saved = medians.get(("ce", None)), saved.get(("ce", None))
    floors = {}
    if args.task == "ner":  # the bare products of each row, timed after the rows, in the same process
        for row in rows:
            products = ner_matmuls(NerModelConfig(), args.batch, args.length, args.tags, row[0] in SOFT_PROCEDURES)
            floors[row] = (sum(p.flops for p in products), matmul_floor(products, device))
    lines = [
        f"# training step (forward + backward + Adam) of the {args.task.upper()} model: vocabulary {args.vocab}, "
        f"batch {args.batch}, length {args.length}, device {device.type}, {torch.get_num_threads()} threads, "
        f"ε=0, α=1; median of {args.rounds} interleaved rounds of {args.steps} steps",
        "# x ce: ratio to ce (teacher forcing, fused where the attention allows) timed in this run; "
        f"{UNROLLED_CE}: ce through the step-by-step unroll; saved MB: tensors kept for backward",
        "# GFLOP/s: the step's matrix products (forward and backward) per second of the whole step; floor ms: those "
        "products timed alone as bare torch.mm calls of the same shapes; x floor: the step's time over that (NER)",
        f"{'procedure':<12} {'top_k':>6} {'ms/step':>9} {'x ce':>6} {'GFLOP/s':>8} {'floor ms':>9} {'x floor':>8} "
        f"{'saved MB':>9} {'x ce':>6}",
    ]
    for (procedure, top_k), seconds in medians.items():
        ratio = f"{seconds / base:.2f}" if base else "-"
        kept = saved[(procedure, top_k)]
        kept_ratio = f"{kept / base_saved:.2f}" if base_saved else "-"
        flops, floor = floors.get((procedure, top_k), (None, None))
        rate = f"{flops / seconds / 1e9:.3g}" if flops else "-"
        floor_ms, over_floor = (f"{1000 * floor:.3g}", f"{seconds / floor:.2f}") if floor else ("-", "-")
        lines.append(
            f"{procedure:<12} {top_k or '-':>6} {1000 * seconds:>9.1f} {ratio:>6} {rate:>8} {floor_ms:>9} "
            f"{over_floor:>8} {kept / 2**20:>9.1f} {kept_ratio:>6}"
        )
    if args.profile:  # where one row's time goes: torch's profiler over as many steps as a round times
        from torch.profiler import ProfilerActivity, profile

        row = (args.profile, None)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(args.steps):
                step(row)
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows)
        lines += [f"# profile of {args.profile}, {args.steps} steps (self CPU time per operation)", table]
    return lines


def _rows(top_k: int | None, procedures: list[str]) -> list[tuple[str, int | None]]:
    rows = [(p, None) for p in procedures]
    if top_k:
        rows += [(p, top_k) for p in procedures if p in SOFT_PROCEDURES]
    return rows


def memory_table(args: argparse.Namespace) -> list[str]:
    device = resolve_device(args.device)
    results = []
    for procedure, top_k in _rows(args.top_k, args.procedures):
        command = [
            sys.executable, "-m", "trainer.benchmark", "step", procedure, "--top-k", str(top_k or 0),
            "--vocab", str(args.vocab), "--batch", str(args.batch), "--length", str(args.length),
            "--hidden", str(args.hidden), "--device", device.type,
        ]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-2000:]}")
        results.append((procedure, top_k, json.loads(finished.stdout.strip().splitlines()[-1])))
    base = next(r for p, k, r in results if p == "ce" and k is None) if "ce" in args.procedures else None
    lines = [
        f"# one training step (forward + backward) of the MT model: {args.hidden} units, vocabulary {args.vocab}, "
        f"batch {args.batch}, source and target length {args.length}, device {device.type}, ε=0, α=1",
        f"# saved = tensors kept for backward; peak = {'max_memory_allocated' if device.type == 'cuda' else 'RSS'} "
        "increase over the step; ratios are to ce in this run",
        f"{'procedure':<12} {'top_k':>6} {'saved MB':>9} {'x ce':>6} {'peak MB':>9} {'x ce':>6} "
        f"{'seconds':>8} {'x ce':>6}",
    ]
    for procedure, top_k, r in results:
        saved_ratio = f"{r['saved_bytes'] / base['saved_bytes']:.2f}" if base else "-"
        peak_ratio = f"{r['peak_bytes'] / base['peak_bytes']:.2f}" if base else "-"
        seconds_ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
        lines.append(
            f"{procedure:<12} {top_k or '-':>6} {r['saved_bytes'] / 2**20:>9.1f} {saved_ratio:>6} "
            f"{r['peak_bytes'] / 2**20:>9.1f} {peak_ratio:>6} {r['seconds']:>8.2f} {seconds_ratio:>6}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.benchmark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    memory = commands.add_parser("memory", help="peak memory of one training step per procedure (ratios to ce)")
    memory.add_argument("--task", choices=("mt",), default="mt", help="task whose model is measured (mt)")
    memory.add_argument(
        "--procedures", nargs="+", choices=PROCEDURES, default=list(PROCEDURES), help="rows (default: all five)"
    )
    memory.add_argument(
        "--top-k", type=int, default=100, help="also measure the soft procedures with this soft_top_k (0: do not)"
    )
    memory.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    speed = commands.add_parser("speed", help="seconds per training step per procedure (ratios to ce)")
    speed.add_argument("--task", choices=("ner", "mt"), default="ner", help="model to time (default ner)")
    speed.add_argument(
        "--procedures", nargs="+", choices=PROCEDURES, default=list(PROCEDURES), help="rows (default: all five)"
    )
    speed.add_argument("--top-k", type=int, default=0, help="also time the soft procedures with this soft_top_k")
    speed.add_argument("--tags", type=int, default=11, help="NER output vocabulary (CoNLL-2003: 9 tags + 2 specials)")
    speed.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    speed.add_argument("--steps", type=int, default=5, help="steps per procedure and round")
    speed.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    speed.add_argument(
        "--profile", choices=PROCEDURES, default=None, help="also profile this procedure's steps (torch.profiler)"
    )
    speed.add_argument("--profile-rows", type=int, default=15, help="operations the profile lists (default 15)")
    step = commands.add_parser("step", help="(internal) measure one row in this process and print JSON")
    step.add_argument("procedure", choices=PROCEDURES)
    step.add_argument("--top-k", type=int, default=0, help="0: no truncation")
    for command in (memory, step, speed):
        command.add_argument(
            "--vocab", type=int, default=32000, help="source (and MT target) vocabulary (MT paper: 32000)"
        )
        command.add_argument("--batch", type=int, default=64, help="sentences per batch")
        command.add_argument("--length", type=int, default=50, help="source and target tokens per sentence")
        command.add_argument("--hidden", type=int, default=256, help="embedding, LSTM and attention units (paper: 256)")
        command.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    if args.command == "step":
        device = resolve_device(args.device)
        print(json.dumps(measure_step(args.procedure, args.top_k or None, args.vocab, args.batch, args.length,
                                      args.hidden, device)))  # fmt: skip
        return 0
    if args.smoke:
        args.vocab, args.batch, args.length, args.hidden, args.top_k = 500, 4, 6, 16, 10
    if args.command == "speed":
        if args.smoke:
            args.rounds, args.steps = 2, 1
        print("\n".join(speed_table(args)), flush=True)
        return 0
    print("\n".join(memory_table(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
