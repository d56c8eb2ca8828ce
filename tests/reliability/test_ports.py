"""Tests that hold on a shared machine: climdown's local cluster binds no fixed port."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator

import pytest

from climdown.cluster import SCHEDULER_ENV, dask_client

DASK_PORTS = (8786, 8787)  # dask's default scheduler and dashboard ports


def _hold(port: int) -> socket.socket | None:
    """A socket listening on ``port`` on every interface (None if someone else holds it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("", port))
    except OSError:
        sock.close()
        return None  # already held by another process: the situation under test anyway
    sock.listen(1)
    return sock


@pytest.fixture
def held_ports() -> Iterator[list[int]]:
    """Dask's default ports, held by this process for the duration of a test."""
    socks = [_hold(port) for port in DASK_PORTS]
    try:
        yield list(DASK_PORTS)
    finally:
        for s in socks:
            if s is not None:
                s.close()


def _bound_ports(client) -> set[int]:
    """Every TCP port the scheduler of ``client`` listens on (its comm and HTTP servers)."""
    info = client.scheduler_info()
    ports = {int(str(info["address"]).rsplit(":", 1)[1])}
    ports |= {int(port) for port in info.get("services", {}).values()}
    return ports


@pytest.mark.parametrize("dashboard", [None, ":0"])
def test_local_cluster_starts_while_another_holds_dask_ports(held_ports, monkeypatch, dashboard):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dask's "port 8787 is already in use" must not happen
        with dask_client(workers=1, dashboard_address=dashboard) as client:
            assert client is not None
            assert client.submit(sum, [1, 2, 3]).result() == 6
            assert not _bound_ports(client) & set(held_ports)


def test_a_fixed_dashboard_port_in_use_is_dasks_warning(held_ports, monkeypatch):
    # contrast: asking for the held port explicitly is the caller's choice, and dask says so
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with pytest.warns(UserWarning, match="already in use"):
        with dask_client(workers=1, dashboard_address=":8787"):
            pass
