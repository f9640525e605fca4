"""A full disk as one clear error: the path that could not be written and the space left there (issue 16).

A full disk shows up in many places at once: a trial's checkpoint (in its worker), the MLflow and Optuna SQLite
files and Tune's experiment snapshot (in the driver). Each raises its own kind of error (OSError with ENOSPC,
pyarrow's OSError that only says so in its text, SQLite's "database or disk is full" inside SQLAlchemy's and
Optuna's errors), and Tune logs a traceback per failed trial. `disk_full` recognises them all, trials turn theirs
into `DiskFull`, and the driver's `DiskFullWatch` stops the sweep at the first one, so the user reads one line.
Nothing is lost: every finished epoch is in a checkpoint, and the rerun after space is freed resumes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from ray.tune import Callback

FULL_TEXTS = ("No space left on device", "database or disk is full", "Disk quota exceeded")


class DiskFull(OSError):
    """A write that failed for want of space; str() is the message the sweep prints."""

    def __reduce__(self):  # one argument, so that Ray can rebuild it in the driver
        return (DiskFull, (str(self),))

    @classmethod
    def of(cls, error: BaseException, *candidates: Path | str) -> DiskFull:
        """The error `error` as a DiskFull naming the file it was writing (when it says) or else the candidate
        location with the least space left."""
        if isinstance(error, DiskFull):
            return error
        named = next((e.filename for e in chain(error) if getattr(e, "filename", None)), None)
        places = [Path(named)] if named else [Path(c) for c in candidates if c and "://" not in str(c)]
        path = min(places, key=lambda p: free_bytes(p) or 0) if places else None
        where = f"could not write {path} ({space_text(path)})" if path else "could not write the sweep's storage"
        return cls(errno.ENOSPC, f"the disk is full: {where}; free some space and rerun the same command to resume")

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, what caused it (Python's chain, Ray's task-error cause, SQLAlchemy's `orig`), and so on."""
    seen: set[int] = set()
    queue = [error]
    while queue:
        current = queue.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        causes = [current.__cause__, current.__context__, getattr(current, "cause", None)]
        causes.append(getattr(current, "orig", None))
        queue += [cause for cause in causes if isinstance(cause, BaseException)]


def disk_full(error: BaseException) -> bool:
    for current in chain(error):
        if isinstance(current, DiskFull):
            return True
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(current) for text in FULL_TEXTS):
            return True
    return False


def free_bytes(path: Path | None) -> int | None:
    """Bytes free on the filesystem of `path` (its nearest existing ancestor), None where that is unknown."""
    while path is not None and not path.exists():
        path = path.parent if path.parent != path else None
    try:
        return shutil.disk_usage(path).free if path is not None else None
    except OSError:
        return None


def space_text(path: Path | None) -> str:
    if path is None:
        return "free space unknown"
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        usage = shutil.disk_usage(existing)
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)} on its filesystem"


def _size(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


TUNE_LOGGER = "ray.tune.execution.tune_controller"  # logs each failed trial with its traceback
_kept_back: list[DiskFull] = []  # failures for want of space that the filter kept out of this driver's log


class _KeepBack(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or not disk_full(error):
            return True
        _kept_back.append(next((e for e in chain(error) if isinstance(e, DiskFull)), None) or DiskFull.of(error))
        return False


@contextlib.contextmanager
def keeping_back_trial_tracebacks():
    """While Tune runs in this driver: Tune logs a failed trial with its traceback before any callback hears of
    it; a trial that failed for want of space is kept out of the log (StopOnDiskFull stops the sweep with its one
    message instead)."""
    _kept_back.clear()
    keep_back = _KeepBack()
    logging.getLogger(TUNE_LOGGER).addFilter(keep_back)
    try:
        yield
    finally:
        logging.getLogger(TUNE_LOGGER).removeFilter(keep_back)


class StopOnDiskFull(Callback):
    """Stops the sweep at the first trial that failed for want of space, before Tune retries it (--max-failures)
    into the same full disk: raised out of Tune's loop, the error becomes main()'s one message. First among the
    callbacks, so that no other records the trial as failed: the rerun continues it."""

    def _stop(self, *args, **info) -> None:
        if _kept_back:
            raise _kept_back[0]

    on_trial_error = on_trial_recover = on_step_end = _stop
