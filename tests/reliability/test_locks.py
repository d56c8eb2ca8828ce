"""Two processes on one output: a store build waits for the other, a trainer refuses a run
folder another process holds, ``climdown experiments`` skips such a row, and a killed holder
leaves no stale lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
import yaml

from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, is_complete
from climdown.errors import BusyError, StoreError
from climdown.locks import LOCK_NAME, hold, holder, lock_beside
from climdown.study.runner import cached_row
from climdown.train import train

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock locks are POSIX")

RECIPES = Path(str(resources.files("climdown.study") / "recipes"))

#: Holds the lock file argv[1] until the file argv[2] appears (or it is killed); touches
#: argv[1] + ".ready" once it holds it.
_HOLDER = """
import sys, time
from pathlib import Path
from climdown.locks import hold
lock, release = Path(sys.argv[1]), Path(sys.argv[2])
with hold(lock, "test", wait=False):
    Path(str(lock) + ".ready").touch()
    while not release.exists():
        time.sleep(0.05)
"""


class Holder:
    """Another process holding a lock file until released or killed."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.release = lock.with_name(lock.name + ".release")
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock), str(self.release)])
        ready = Path(str(lock) + ".ready")
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert self.proc.poll() is None, "the holder process died"
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)

    def let_go(self) -> None:
        self.release.touch()
        assert self.proc.wait(timeout=120) == 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=120)


def _tiny_recipe(out: Path) -> dict:
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe["output"] = str(out)
    return recipe


def test_a_held_lock_is_refused_and_named_and_a_killed_holder_leaves_none(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    other = Holder(lock)
    try:
        who = holder(lock)
        assert who is not None and f"pid {other.proc.pid}" in who
        with pytest.raises(BusyError, match=rf"run 'x' is in use by pid {other.proc.pid} on"):
            with hold(lock, "run 'x'", wait=False):
                pass
    finally:
        other.kill()  # SIGKILL: no clean-up ran
    assert holder(lock) is None
    with hold(lock, "run 'x'", wait=False):  # the OS dropped the lock with its process
        assert holder(lock) is None  # this process's own lock is not "another process"
        with hold(lock, "run 'x'", wait=False):  # re-entrant in one process
            pass


def test_a_waiting_hold_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    other = Holder(lock)
    got: list[float] = []
    import threading

    def take() -> None:
        with hold(lock, "x", wait=True):
            got.append(time.monotonic())

    t = threading.Thread(target=take)
    t.start()
    time.sleep(0.5)
    assert not got  # still waiting
    let_go = time.monotonic()
    other.let_go()
    t.join(timeout=120)
    assert got and got[0] >= let_go


def test_a_second_store_build_waits_for_the_first(tmp_path: Path) -> None:
    """The second builder must not delete the first one's partial store: it waits, then builds
    (or, as here, builds once the first lets go)."""
    final = tmp_path / "tiny.zarr"
    other = Holder(lock_beside(final))
    import threading

    done: list[Path] = []
    t = threading.Thread(target=lambda: done.append(build_store(load_recipe(_tiny_recipe(final)))))
    t.start()
    time.sleep(1.0)
    assert not done and not final.exists()  # waiting, nothing written
    other.let_go()
    t.join(timeout=300)
    assert done == [final] and is_complete(final)


def test_train_refuses_a_run_folder_another_process_holds(tmp_path: Path) -> None:
    store = build_store(load_recipe(_tiny_recipe(tmp_path / "tiny.zarr")))
    out = tmp_path / "run"
    out.mkdir()
    other = Holder(out / LOCK_NAME)
    try:
        with pytest.raises(BusyError, match=rf"run folder '{out}' is in use by pid"):
            train(store, epochs=1, out=out, batch_size=8, progress=False)
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".climdown")) == []
    finally:
        other.kill()
    summary = train(store, epochs=1, out=out, batch_size=8, progress=False)  # free again
    assert summary["epochs"] == 1


def test_experiments_skip_a_row_another_process_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from climdown.cli import main

    config = tmp_path / "experiments.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "batch_size": 16,
                "members": 3,
                "experiments": [
                    {"id": "A", "recipe": "tiny", "model": "cnn", "constraint": "softmax"},
                    {"id": "B", "recipe": "tiny", "model": "cnn", "constraint": "none"},
                ],
            }
        )
    )
    out = tmp_path / "exp"
    (out / "runs").mkdir(parents=True)
    other = Holder(lock_beside(out / "runs" / "A"))
    try:
        assert main(["experiments", str(config), "--quick", "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "[A seed 0] skipped: run folder" in printed and "in use by pid" in printed
        assert not (out / "runs" / "A" / "scores.json").exists()
        assert json.loads((out / "runs" / "B" / "scores.json").read_text())["id"] == "B"
        page = (out / "results.md").read_text()
        assert f"seed 0: 0 of 1 epochs, training now in A/ (pid {other.proc.pid}" in page
    finally:
        other.kill()
    assert os.path.exists(lock_beside(out / "runs" / "A"))  # the file stays, the lock does not
    assert holder(lock_beside(out / "runs" / "A")) is None


def test_a_row_another_process_makes_is_waited_for_or_refused(tmp_path: Path) -> None:
    """``cached_row``: ``wait=False`` refuses at once (experiments go on with other rows);
    ``wait=True`` (baselines, real-data rows) computes only after the holder let go."""
    import threading

    run = tmp_path / "run"
    other = Holder(lock_beside(run))
    computed: list[float] = []

    def compute() -> dict:
        computed.append(time.monotonic())
        return {"RMSE": 1.0}

    with pytest.raises(BusyError, match="in use by pid"):
        cached_row(run, {"a": 1}, compute, wait=False)
    rows: list[dict] = []
    t = threading.Thread(target=lambda: rows.append(cached_row(run, {"a": 1}, compute)))
    t.start()
    time.sleep(0.5)
    assert not computed  # waiting
    let_go = time.monotonic()
    other.let_go()
    t.join(timeout=120)
    assert computed and computed[0] >= let_go and rows[0]["RMSE"] == 1.0
    assert cached_row(run, {"a": 1}, compute) == rows[0] and len(computed) == 1  # read back


def test_another_thread_is_excluded_like_another_process(tmp_path: Path) -> None:
    import threading

    lock = tmp_path / "x.lock"
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with hold(lock, "x", wait=False):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    with hold(lock, "x", wait=False):
        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], BusyError)
    t = threading.Thread(target=other)  # free again
    t.start()
    t.join(timeout=60)
    assert len(errors) == 1


def test_a_lock_file_this_user_cannot_open_warns_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's lock file in a shared folder (mode 0444 for us): warn, work unlocked."""
    import climdown.locks

    def refused(path: object, flags: int, mode: int = 0o777) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(climdown.locks.os, "open", refused)
    monkeypatch.setattr(climdown.locks, "_WARNED", set())
    done = []
    with pytest.warns(RuntimeWarning, match="cannot lock its outputs here .*Permission denied"):
        with hold(tmp_path / "theirs.lock", "x", wait=False):
            done.append(True)
    assert done == [True]


def test_a_file_of_the_lock_s_name_that_climdown_did_not_write_is_left_alone(
    tmp_path: Path,
) -> None:
    """A user's own ``.climdown.lock`` keeps its text; a killed holder's line is reused."""
    lock = tmp_path / LOCK_NAME
    lock.write_text("my notes on this run\n")
    with pytest.raises(StoreError, match="not a climdown lock file .*my notes.*move or rename"):
        with hold(lock, "run 'x'", wait=True):
            pass
    assert lock.read_text() == "my notes on this run\n"
    assert holder(lock) is None  # refused, and let go

    lock.write_text("pid 123 on somehost since 2026-12-01 10:00:00 UTC")  # a killed holder's
    with hold(lock, "run 'x'", wait=False):
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
    assert lock.read_text() == ""
