"""`python -m orchestrator.pause OUT`: hold a sweep's trials at an epoch boundary, and let them go on.

A held trial has finished an epoch and stored its checkpoint, and waits before it starts the next one: it keeps
its slot and its memory but uses no CPU or GPU time, and the sweep's driver waits with it. Uses: lend the
machine to something else for a while; look at the first N epochs of every configuration before spending more
(`--after-epoch N`); let one configuration finish first (`--release KEY`); stop a sweep at a known point.

The pause is one small file beside the trials' checkpoints (STORAGE/pause.json; the storage is the sweep's
--storage, its --out by default, s3:// included), which every trial reads at each of its epoch boundaries: it
reaches every node of a cluster, needs no running driver, and outlives one, so a sweep rerun while paused stays
paused (it says so when it starts). `python -m orchestrator.sweep ... --pause-after-epoch N` starts a sweep paused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs

from orchestrator.outdir import HELD_DIR, PAUSE_FILE, StateError, SweepState

POLL_SECONDS = 0.5  # how often a held trial reads the pause again: one small read, also on s3://

EPILOG = """\
examples:
  python -m orchestrator.pause sweeps/ner                       # every trial holds after the epoch it is in
  python -m orchestrator.pause sweeps/ner --after-epoch 3       # ... once it has trained 3 epochs
  python -m orchestrator.pause sweeps/ner --release ce-000-r0   # this trial goes on, the others keep holding
  python -m orchestrator.pause sweeps/ner --resume              # every trial goes on
  python -m orchestrator.pause sweeps/ner --status

A trial that has trained its whole budget ends as usual: there is no epoch boundary left to hold at.
Exit status: 0 done, 2 OUT is not a sweep's output directory or the options are wrong.
"""


@dataclass(frozen=True)
class Pause:
    """Trials hold at every epoch boundary at which they have trained at least `after_epoch` epochs (0: at the
    next boundary, the start of a trial included), except those in `released`."""

    after_epoch: int = 0
    released: frozenset[str] = field(default_factory=frozenset)

    def holds(self, key: str, epochs_trained: int) -> bool:
        return key not in self.released and epochs_trained >= self.after_epoch

    def to_json(self) -> str:
        return json.dumps({"after_epoch": self.after_epoch, "released": sorted(self.released)}) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Pause:
        """A pause file that does not parse holds every trial: it can only be a pause someone meant."""
        try:
            data = json.loads(text)
            return cls(int(data.get("after_epoch", 0)), frozenset(map(str, data.get("released", []))))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def describe(self) -> str:
        when = "at their next epoch boundary" if self.after_epoch == 0 else f"once they have {self.after_epoch} epochs"
        released = f"; released: {', '.join(sorted(self.released))}" if self.released else ""
        return f"paused: trials hold {when}{released}"


@dataclass(frozen=True)
class PauseFile:
    """Where a sweep's pause lives: a filesystem Tune's storage is on, the pause file's path in it, and the folder
    where each held trial leaves a note (KEY.json: the epochs it has), removed when it goes on."""

    filesystem: pyarrow.fs.FileSystem
    path: str
    held_dir: str

    @classmethod
    def in_storage(cls, filesystem: pyarrow.fs.FileSystem, root: str) -> PauseFile:
        """For a storage path on `filesystem` (what a trial's Tune context gives)."""
        root = root.rstrip("/")
        return cls(filesystem, f"{root}/{PAUSE_FILE}", f"{root}/{HELD_DIR}")

    @classmethod
    def of_storage(cls, storage: str) -> PauseFile:
        """For the sweep's storage as given to the sweep (a directory or a URI such as s3://bucket/prefix)."""
        return cls.in_storage(*pyarrow.fs.FileSystem.from_uri(storage))

    def read(self) -> Pause | None:
        try:
            with self.filesystem.open_input_stream(self.path) as stream:
                return Pause.from_json(stream.read().decode("utf-8", errors="replace"))
        except FileNotFoundError:
            return None

    def write(self, pause: Pause) -> None:
        self._write(self.path, pause.to_json())

    def clear(self) -> None:
        self._delete(self.path)

    def held(self) -> dict[str, int]:
        """The trials holding now, with the epochs each has trained (a trial killed while it held is listed until
        it reaches its next epoch boundary)."""
        selector = pyarrow.fs.FileSelector(self.held_dir, allow_not_found=True)
        held = {}
        for info in self.filesystem.get_file_info(selector):
            if info.base_name.endswith(".json"):
                try:
                    with self.filesystem.open_input_stream(info.path) as stream:
                        held[info.base_name.removesuffix(".json")] = int(json.loads(stream.read())["epochs"])
                except (FileNotFoundError, ValueError, KeyError, TypeError):
                    continue  # gone on meanwhile, or being written
        return held

    def hold(self, key: str, epochs_trained: int) -> float:
        """Waits while the pause holds trial `key`, which has trained `epochs_trained` epochs; returns the seconds
        waited. Called by the trial at its epoch boundaries; it waits as long as the pause holds it (its owner
        lifts it; Tune ends the trial's process if the sweep stops meanwhile)."""
        note = f"{self.held_dir}/{key}.json"
        pause = self.read()
        if pause is None or not pause.holds(key, epochs_trained):
            self._delete(note)  # left by an earlier attempt of this trial that was killed while it held
            return 0.0
        self._write(note, json.dumps({"epochs": epochs_trained, "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        started = time.monotonic()
        while pause is not None and pause.holds(key, epochs_trained):
            time.sleep(POLL_SECONDS)
            pause = self.read()
        self._delete(note)
        return time.monotonic() - started

    def _write(self, path: str, text: str) -> None:
        """Whole or not at all: nobody reads half a file (a rename locally; an object store's PUT is atomic)."""
        self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        partial = f"{path}.partial"
        with self.filesystem.open_output_stream(partial) as stream:
            stream.write(text.encode())
        self.filesystem.move(partial, path)

    def _delete(self, path: str) -> None:
        try:
            self.filesystem.delete_file(path)
        except FileNotFoundError:
            pass


def pause_file(out_dir: Path) -> PauseFile:
    """The pause file of the sweep in `out_dir` (its storage comes from sweep.json)."""
    return PauseFile.of_storage(SweepState.read(out_dir).storage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.pause",
        description="Hold a sweep's trials at an epoch boundary (after the epoch each is in, or once it has N "
        "epochs), release some of them, or let them all go on. Works on a running sweep, on any node of a "
        "cluster, and on one whose driver is not running (the rerun starts paused).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="the sweep's output directory (its --out)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--after-epoch", type=int, default=None, metavar="N", help="hold trials once they have trained N epochs"
    )
    action.add_argument("--release", nargs="+", metavar="KEY", help="let these trials (e.g. ce-000-r0) go on")
    action.add_argument("--resume", action="store_true", help="lift the pause: every trial goes on")
    action.add_argument("--status", action="store_true", help="say whether the sweep is paused, change nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.after_epoch is not None and args.after_epoch < 0:
        parser.error(f"--after-epoch must be at least 0, not {args.after_epoch}")
    try:
        file = pause_file(args.out.expanduser().resolve())
        current = file.read()
    except (StateError, OSError, pyarrow.ArrowException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.status:
        print(current.describe() if current else "not paused")
        for key, epochs in sorted(file.held().items()):
            print(f"  {key} holds after {epochs} epoch(s)")
        return 0
    if args.resume:
        file.clear()
        print("not paused: every trial goes on")
        return 0
    if args.release:
        if current is None:
            print("not paused: every trial goes on already")
            return 0
        current = Pause(current.after_epoch, current.released | set(args.release))
    else:
        current = Pause(args.after_epoch or 0)
    file.write(current)
    print(f"{current.describe()} (python -m orchestrator.pause {args.out} --resume lifts it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
