"""One writer at a time: advisory locks on a store being built or a run folder being trained.

Two processes pointed at the same output (two ``climdown experiments`` in one ``--out`` to use
both cores, two batch jobs with the same recipe) would otherwise write the same files: the
second store build deletes the first one's half-written store as "left by a killed run", and two
trainers overwrite each other's checkpoints. :func:`hold` takes an exclusive lock on a small
file before such a write. A builder waits for the lock (then finds the store built); a trainer
refuses a run folder that another process holds (:class:`~climdown.errors.BusyError`, naming
that process), and ``climdown experiments`` skips such a row and goes on with the next.

The locks are ``flock`` locks: the operating system drops them when their process ends, however
it ends, so a killed run never leaves a stale lock behind (the lock file itself stays, empty of
meaning, and is reused). Where the filesystem has no ``flock`` (some network filesystems) or the
platform has no ``fcntl`` (Windows), :func:`hold` warns once and goes on unlocked, as climdown
did before it had locks. Holding is re-entrant within a thread: a nested :func:`hold` of a
path the same thread already holds is a no-op; another thread of the process is excluded as
another process is.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from climdown.errors import BusyError, StoreError

__all__ = ["hold", "holder", "lock_beside", "LOCK_NAME"]

#: Name of the lock file inside a run folder (a store's lock sits beside it: ``.NAME.lock``).
LOCK_NAME = ".climdown.lock"


def lock_beside(path: str | os.PathLike[str]) -> Path:
    """The lock file beside ``path`` (``.NAME.lock``): for what is swapped into place by a rename
    (a store) or may not exist yet (a row's run folder, ``runs/.E3.lock`` for ``runs/E3``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
_TRIES = 3
#: What a holder writes into its lock file; a killed holder leaves it there. Any other text
#: means the file is not climdown's, and it is not overwritten.
_STAMP = re.compile(r"pid \d+ on .* since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")

#: Lock files this process holds (resolved path, thread), for re-entrant holds: a nested hold
#: in the same thread is a no-op; another thread takes the flock lock like another process.
_HELD: set[tuple[str, int]] = set()
_WARNED: set[str] = set()


def _unlocked(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        warnings.warn(
            f"climdown cannot lock its outputs here ({reason}); do not point two processes at "
            "the same store or run folder",
            RuntimeWarning,
            stacklevel=5,
        )


def _holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it (pid, host, since), for the error."""
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def hold(path: str | os.PathLike[str], what: str, *, wait: bool) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the ``with`` block.

    Parameters
    ----------
    path : path
        The lock file (its folder must exist).
    what : str
        What is being written, for the error message (e.g. ``"run folder 'runs/E3'"``).
    wait : bool
        Wait until the holder lets go (True), or raise at once (False).

    Raises
    ------
    BusyError
        ``wait=False`` and another process holds the lock; the message names it.
    StoreError
        ``path`` is a file of someone else's (text that is not a holder's line); it is left
        as it is.
    """
    path = Path(path)
    key = (str(path.resolve()), threading.get_ident())
    if key in _HELD:  # this thread holds it already
        yield
        return
    if fcntl is None:  # pragma: no cover - Windows
        _unlocked("no fcntl on this platform")
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as exc:  # e.g. another user's lock file in a shared folder
        _unlocked(f"cannot open {str(path)!r}: {exc.strerror}")
        yield
        return
    try:
        if not _lock(fd, path, what, wait):
            yield
            return
        _refuse_a_foreign_file(fd, path, what)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _refuse_a_foreign_file(fd: int, path: Path, what: str) -> None:
    """Raise (and let go) when the locked file holds text climdown did not write: a user's own
    file that happens to have the lock's name is never truncated."""
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    if text and not _STAMP.fullmatch(text):
        fcntl.flock(fd, fcntl.LOCK_UN)
        raise StoreError(
            f"{str(path)!r} is not a climdown lock file (it begins {text[:60]!r}), but climdown "
            f"keeps the lock for {what} under that name and would overwrite it; move or rename "
            "that file, then run again"
        )


def _lock(fd: int, path: Path, what: str, wait: bool) -> bool:
    """Lock ``fd``: True when locked, False where the filesystem cannot lock (warned)."""
    for attempt in range(_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in _BUSY:
                _unlocked(f"flock on {path.parent}: {exc.strerror}")
                return False
        if not wait and attempt + 1 < _TRIES:
            time.sleep(0.2)  # a passing look (holder()) holds it for an instant only
    if not wait:
        raise BusyError(
            f"{what} is in use by {_holder(path)} (lock {str(path)!r}); wait for it to finish, "
            "or write to another path. The lock goes when that process ends, however it ends"
        )
    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder lets go
    return True


def holder(path: str | os.PathLike[str]) -> str | None:
    """Who holds the lock file ``path`` now ("pid N on HOST since T"), or None when no other
    process does (or it cannot be told: no lock file, no ``flock`` here). It only looks: the
    lock is taken for an instant and let go."""
    path = Path(path)
    mine = str(path.resolve())
    if fcntl is None or not path.is_file() or any(p == mine for p, _ in _HELD):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return _holder(path) if exc.errno in _BUSY else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
