"""A run directory as a transaction, for both packages' ``train`` commands.

A run directory is *new* (absent or empty), *unfinished* (it holds a run's state but not its ``finished``
marker file, e.g. after a crash or Ctrl-C) or *finished* (the marker exists: the marker is written last).
:class:`RunDirectory` enforces, before any work:

- one run at a time: an exclusive lock (``fcntl.flock`` on ``.NAME.lock`` beside the directory, released by the
  kernel even on ``kill -9``); a second run fails at once, naming the holder;
- nothing is reused by accident: an unfinished run continues only with ``resume``, a finished one is replaced
  only with ``overwrite`` (or extended with ``resume`` where the caller allows it);
- a failed run never damages a finished one: with ``overwrite`` the new run is written into a staging
  directory beside the old one and swapped in by :meth:`RunDirectory.publish`; until then the old run is intact;
- a new run that fails before it saved anything resumable leaves nothing behind.

    with RunDirectory(out, finished="metrics.json", resumable="checkpoint.pt", resume=args.resume,
                      overwrite=args.overwrite) as run:
        ...write into run.path...
        run.publish()
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from robustrec.atomic import follow_umask

NEW, UNFINISHED, FINISHED = "new", "unfinished", "finished"


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked; the message says why and what to do."""


class RunDirectory:
    """Exclusive, transactional use of the run directory ``path``.

    Args:
        path: the run directory (created if absent).
        finished: name of the file whose presence marks a finished run (written last by the run).
        resumable: glob of the files a failed run can be resumed from (e.g. its checkpoint); a new run that fails
            before writing one is removed. None: a failed new run is always kept.
        resume: continue the run in ``path`` (an unfinished one, or a finished one the caller may extend).
        overwrite: replace what ``path`` holds, atomically at :meth:`publish`.

    Attributes:
        state: what ``path`` held on entry: ``"new"``, ``"unfinished"`` or ``"finished"``.
        path: where the run writes: ``path`` itself, or a staging directory beside it with ``overwrite``.
    """

    def __init__(self, path: str | os.PathLike, *, finished: str, resumable: str | None = None,
                 resume: bool = False, overwrite: bool = False) -> None:
        if resume and overwrite:
            raise RunDirectoryError("--resume and --overwrite exclude each other: continue the run, or replace it")
        self.target = Path(path)
        self.finished_marker = finished
        self.resumable = resumable
        self.resume, self.overwrite = resume, overwrite
        self.path = self.target
        self.state = NEW
        self._lock = None
        self._published = False

    # -- entering: lock, inspect, decide ----------------------------------------------------------------------
    def __enter__(self) -> RunDirectory:
        if self.target.exists() and not self.target.is_dir():
            raise RunDirectoryError(f"{self.target} is a file, not a run directory; choose another --out")
        parent = self.target.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._lock = _acquire(parent / f".{self.target.name}.lock", self.target)
        try:
            self.state = self._inspect()
            self._decide()
        except BaseException:
            self._release()
            raise
        return self

    def _inspect(self) -> str:
        if (self.target / self.finished_marker).is_file():
            return FINISHED
        if self.target.is_dir() and any(self.target.iterdir()):
            return UNFINISHED
        return NEW

    def _decide(self) -> None:
        if self.state == NEW:
            if self.resume:
                raise RunDirectoryError(f"--resume: {self.target} holds no run to resume; drop --resume to start one")
            self.target.mkdir(parents=True, exist_ok=True)
        elif self.overwrite:
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.staging-", dir=self.target.parent))
            follow_umask(self.path, directory=True)
        elif not self.resume:
            what = ("a finished run" if self.state == FINISHED else "an unfinished run (no "
                    f"{self.finished_marker} yet: it was stopped or failed)")
            how = ("--resume with more epochs to extend it" if self.state == FINISHED else "--resume to continue it")
            raise RunDirectoryError(f"{self.target} holds {what}; use {how}, --overwrite to replace it, "
                                    "or another --out")

    # -- leaving: publish or clean up --------------------------------------------------------------------------
    def publish(self) -> None:
        """Make the run final: with ``overwrite``, swap the staging directory in for the old run."""
        if self.path != self.target:
            old = self.target.with_name(f".{self.target.name}.replaced-{os.getpid()}")
            os.replace(self.target, old)
            os.replace(self.path, self.target)
            shutil.rmtree(old, ignore_errors=True)
            self.path = self.target
        self._published = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._published and self.path != self.target:
            shutil.rmtree(self.path, ignore_errors=True)  # an unpublished replacement: the old run stays
        elif (exc_type is not None and self.state == NEW and self.resumable is not None
              and not any(self.target.glob(self.resumable))):
            shutil.rmtree(self.target, ignore_errors=True)  # a new run that failed with nothing to resume
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None


def _acquire(lock_path: Path, target: Path):
    """An open, exclusively flock'ed handle of ``lock_path``; RunDirectoryError naming the holder of ``target``
    if it is taken."""
    try:
        handle = open(lock_path, "a+")
    except OSError as error:
        raise RunDirectoryError(f"cannot create the lock {lock_path}: {error.strerror}; is the folder writable?") \
            from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirectoryError(f"{target} is in use by {holder}; wait for it or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}))
    handle.flush()
    return handle
