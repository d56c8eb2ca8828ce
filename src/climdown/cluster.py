"""A dask cluster for building stores and downscaling files: connect to one, or start one here.

climdown runs on dask.distributed, nothing home-made. :func:`dask_client` connects to a running
scheduler (an address such as ``tcp://node:8786``, a scheduler file written by
``dask scheduler --scheduler-file``, or the environment variable ``CLIMDOWN_SCHEDULER``), or
starts a :class:`distributed.LocalCluster` of single-threaded worker processes sized to the
machine, or does nothing (dask's local threaded scheduler). It closes what it opened. Training
across processes is :mod:`climdown.ddp`'s job.

``distributed`` is imported inside the functions that need it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from climdown.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import distributed

__all__ = ["SCHEDULER_ENV", "dask_client", "worker_memory_limit"]

#: Environment variable holding a dask scheduler address (or scheduler file) to run on.
SCHEDULER_ENV = "CLIMDOWN_SCHEDULER"


def worker_memory_limit(workers: int) -> int:
    """Bytes of memory each of ``workers`` local worker processes may use.

    The machine's memory as dask sees it (``distributed.system.MEMORY_LIMIT``: physical
    memory, or the cgroup/rlimit limit when lower) divided evenly between the workers, less
    10 % for the client process. A worker pauses at 80 % of its limit and is restarted at
    95 % (dask's defaults), so one runaway task cannot take the machine down.
    """
    from distributed.system import MEMORY_LIMIT

    return int(0.9 * MEMORY_LIMIT / max(int(workers), 1))


@contextmanager
def dask_client(
    scheduler: str | os.PathLike[str] | distributed.Client | None = None,
    workers: int | None = None,
    *,
    dashboard_address: str | None = None,
    quiet: bool = True,
) -> Iterator[distributed.Client | None]:
    """A dask client for the duration of a ``with`` block, or None for the local scheduler.

    Parameters
    ----------
    scheduler : str, path or distributed.Client, optional
        Where to run: a scheduler address (``tcp://10.0.0.5:8786``), the path of a scheduler
        file (JSON written by ``dask scheduler --scheduler-file``), or a Client that the caller
        owns (used as it is and not closed). Default: the environment variable
        ``CLIMDOWN_SCHEDULER``, if set.
    workers : int, optional
        With no scheduler: start a ``LocalCluster`` of this many worker *processes*, one
        thread each (climdown's tasks hold the GIL in numpy and torch), each allowed
        :func:`worker_memory_limit` bytes. Cannot be combined with a scheduler (the cluster
        decides its workers).
    dashboard_address : str, optional
        The local cluster's dashboard (e.g. ``":8787"``, or ``":0"`` for any free port); None
        (default) starts none. Nothing else binds a fixed port: the scheduler and its HTTP
        server (health and metrics routes, which dask starts even without a dashboard) listen
        on free ports the system picks, so the cluster starts beside any other dask cluster
        on the machine (whose scheduler holds 8786 and dashboard 8787).
    quiet : bool
        Keep the local cluster's log below ERROR level off the terminal.

    Yields
    ------
    distributed.Client or None
        None when neither ``scheduler``, ``CLIMDOWN_SCHEDULER`` nor ``workers`` is given:
        dask's default (threaded) scheduler then runs the work in this process.

    Raises
    ------
    ConfigError
        If both a scheduler and ``workers`` are given, ``workers`` is not a positive integer,
        or the scheduler cannot be reached.

    Examples
    --------
    >>> with dask_client(workers=2) as client:  # doctest: +SKIP
    ...     build_store(recipe, scheduler=client)
    """
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or None
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None and workers is not None:
        raise ConfigError(
            f"both a scheduler ({scheduler!r}) and workers={workers} were given; the workers of "
            "an existing cluster are the cluster's to choose: pass one or the other (unset "
            f"{SCHEDULER_ENV} to start a local cluster)"
        )
    if scheduler is None and workers is None:
        yield None
        return

    import distributed

    if isinstance(scheduler, distributed.Client):
        yield scheduler  # the caller's: theirs to close
        return

    cluster = None
    if scheduler is not None:
        client = _connect(scheduler)
    else:
        assert workers is not None
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=worker_memory_limit(workers),
            silence_logs=logging.ERROR if quiet else logging.WARNING,
            **_scheduler_ports(dashboard_address),
        )
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _scheduler_ports(dashboard_address: str | None) -> dict[str, Any]:
    """LocalCluster keywords that bind only the ports asked for, and free ones otherwise.

    dask's scheduler always starts an HTTP server, and with ``dashboard_address=None`` it binds
    that server to the dashboard's default port 8787 (warning, or failing to start when
    warnings are errors, if another cluster holds it). Without a dashboard the server gets
    port 0 (any free port) and ``dashboard=False``; the scheduler's own port is 0 as well.
    """
    if dashboard_address is None:
        return {
            "scheduler_port": 0,
            "dashboard_address": ":0",
            "scheduler_kwargs": {"dashboard": False},
        }
    return {"scheduler_port": 0, "dashboard_address": dashboard_address}


def _connect(scheduler: str | os.PathLike[str]) -> distributed.Client:
    """A Client of the scheduler at an address or described by a scheduler file."""
    import distributed

    target = str(scheduler)
    as_file = Path(target).suffix == ".json" or Path(target).is_file()
    try:
        if as_file:
            return distributed.Client(scheduler_file=target, timeout="60s")
        return distributed.Client(target, timeout="60s")
    except (OSError, TimeoutError, ValueError) as err:
        what = "scheduler file" if as_file else "scheduler address"
        raise ConfigError(
            f"cannot connect to the dask {what} {target!r} ({err}); start the scheduler first "
            "(`dask scheduler`, or a dask-jobqueue cluster) and pass its address, e.g. "
            "tcp://HOST:8786, or use --workers N for a cluster on this machine"
        ) from err
