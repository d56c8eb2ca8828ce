"""The dask cluster: client set-up, stores built on a cluster, lazy downscaling on a cluster."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import climdown  # noqa: F401  (registers the .climdown accessor)
from climdown.cluster import SCHEDULER_ENV, dask_client
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, partial_path, split_arrays, store_info
from climdown.data.synthetic import synthetic_tcw
from climdown.errors import ConfigError, DataValueError
from climdown.fileio import downscale_file

RECIPES = Path(str(resources.files("climdown.study") / "recipes"))
SPLITS = ("train", "val", "test")


def _tiny(out: Path, **over: object):
    d = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    d.update(output=str(out), **over)
    return load_recipe(d)


@pytest.fixture(scope="module")
def client():
    """One 2-worker LocalCluster (processes, one thread each) for the module's cluster tests."""
    with dask_client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def local_tiny(tmp_path_factory):
    return build_store(_tiny(tmp_path_factory.mktemp("local") / "tiny.zarr"))


# ---------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------
def test_dask_client_defaults_and_errors(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with dask_client() as c:
        assert c is None  # nothing asked: dask's local scheduler
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        with dask_client(workers=0):
            pass
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="both a scheduler"):
        with dask_client(workers=2):
            pass


# ---------------------------------------------------------------------------------------
# stores on a cluster
# ---------------------------------------------------------------------------------------
@pytest.mark.integration
def test_store_built_on_cluster_equals_local_byte_for_byte(client, local_tiny, tmp_path):
    path = build_store(_tiny(tmp_path / "tiny.zarr"), scheduler=client)
    assert not partial_path(path).exists()
    for split in SPLITS:
        a, b = split_arrays(local_tiny, split), split_arrays(path, split)
        for name in a:
            x, y = np.asarray(a[name][:]), np.asarray(b[name][:])
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), f"{split}/{name} differs"
        assert float(np.abs(np.asarray(b["hr"][:])).min()) > 0  # every chunk was written
    assert store_info(path)["normalisation"] == store_info(local_tiny)["normalisation"]
    # and the re-run is a no-op that does not need the cluster
    assert build_store(_tiny(path), scheduler="tcp://127.0.0.1:1") == path


@pytest.mark.integration
def test_store_on_cluster_with_bad_source_raises_and_leaves_nothing(client, tmp_path):
    """Workers read a netCDF source themselves; a chunk with NaN stops the build."""
    ds = synthetic_tcw(6, resolution=2.0, region=(-40, 40, 0, 358), seed=5)
    ds["tcw"][3, 4:36, :] = np.nan  # every 16-row patch of hour 3 meets it
    src = tmp_path / "nan.nc"
    ds.to_netcdf(src)
    r = load_recipe(
        {
            "source": str(src),
            "factor": 4,
            "patch": 16,
            "splits": {"train": {"start": "2020-01-01", "end": "2020-01-01T06:00", "samples": 8}},
            "chunks": 2,
            "output": str(tmp_path / "nan.zarr"),
        }
    )
    with pytest.raises(DataValueError, match=r"split 'train': \d+ NaN/inf values"):
        build_store(r, scheduler=client)
    assert not r.output.exists() and not partial_path(r.output).exists()


# ---------------------------------------------------------------------------------------
# inference on a cluster
# ---------------------------------------------------------------------------------------
def _coarse() -> xr.Dataset:
    return synthetic_tcw(2, resolution=4.0, seed=3).chunk({"time": 1, "lat": 16, "lon": 30})


@pytest.mark.integration
def test_lazy_downscale_on_cluster_equals_local(client):
    lazy = _coarse()["tcw"].climdown.downscale(factor=4, constraint="softmax", model="bicubic")
    assert lazy.chunks is not None  # nothing computed yet
    local = lazy.compute(scheduler="threads")
    remote = lazy.compute(scheduler=client)
    assert remote.shape == (2, 180, 360)
    assert remote.values.tobytes() == local.values.tobytes()


@pytest.mark.integration
def test_downscale_file_on_cluster_equals_local(client, tmp_path):
    src = tmp_path / "lr.nc"
    _coarse().to_netcdf(src)
    kw = {
        "factor": 4,
        "constraint": "softmax",
        "model": "bicubic",
        "max_chunk": 15,
    }  # uniform chunks (see report)
    a = downscale_file(src, tmp_path / "local.zarr", scheduler="synchronous", **kw)
    b = downscale_file(src, tmp_path / "cluster.zarr", scheduler=client, **kw)
    with xr.open_zarr(a, consolidated=False) as x, xr.open_zarr(b, consolidated=False) as y:
        assert y["tcw"].values.tobytes() == x["tcw"].values.tobytes()
