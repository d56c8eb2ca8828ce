"""Torch access to training stores: ``PatchDataset`` (lazy zarr reads, per worker) and ``make_loader``.

Each item is one sample of a store split (see :mod:`climdown.data.store`) as a dict of
tensors in physical units (kg m-2):

* ``lr``   [T, C, h, w]: the coarse patch (C = 1 channel),
* ``hr``   [T, C, H, W]: the fine patch,
* ``area`` [H, W]: the fine cells' areas in m^2 (``Grid(lat, lon).area`` of this patch; in a
  store cut from a curvilinear source, the patch's window of the domain's areas, which
  :class:`climdown.grid.CurvilinearGrid` computed on the sphere), the weights of the
  area-weighted coarsening that links ``lr`` and ``hr``,
* ``index``: the sample's position in the split.

The zarr arrays are opened lazily in each process that reads (so the dataset is safe with
``DataLoader(num_workers>0)``, fork or spawn) and one item reads one zarr chunk. With
``cache=True`` the split's ``hr`` and ``lr`` are read into memory once, at construction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from climdown.data.store import normalisation, split_arrays, store_info
from climdown.errors import DataValueError, StoreError
from climdown.grid import CurvilinearGrid, Grid

__all__ = ["PatchDataset", "make_loader", "patch_spacing"]


class PatchDataset(Dataset):
    """A torch Dataset over one split of a climdown store.

    Parameters
    ----------
    store : str or path
        A complete store built by :func:`climdown.data.store.build_store`.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    cache : bool
        Read the split's ``hr`` and ``lr`` into memory once (fast epochs; memory of the
        whole split, shared copy-on-write with forked workers).
    dtype : torch.dtype
        Floating dtype of ``lr``, ``hr`` and ``area``.

    Attributes
    ----------
    stats : dict
        Normalisation statistics of train HR in kg m-2: ``mean``, ``std``, ``min``,
        ``max``, ``scale`` (models see ``x / scale``) and ``scale_method``.
    factor, frames, patch : int
        Downscaling factor, frames per sample, HR patch size.
    units, variable : str
        ``"kg m-2"`` and the variable name (e.g. ``"tcw"``).
    attrs : dict
        All root attributes of the store (recipe text and hash, source, version, ...).
    curvilinear : bool
        True for a store cut from a curvilinear source: its patches are index windows of one
        domain; :meth:`grid` gives each patch's cells (``lat``/``lon`` are a regular store's).

    Raises
    ------
    StoreError
        If the store is missing, incomplete or has no such split.
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        split: str = "train",
        *,
        cache: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not dtype.is_floating_point:
            raise DataValueError(
                f"dtype must be a floating torch dtype such as torch.float32, got {dtype}"
            )
        self.path = Path(store)
        self.split = split
        self.dtype = dtype
        self.attrs: dict[str, Any] = store_info(self.path)
        arrays = split_arrays(self.path, split)  # raises StoreError for an unknown split
        self.stats: dict[str, Any] = normalisation(self.path, self.attrs)  # StoreError if absent
        self.factor = int(self.attrs["factor"])
        self.frames = int(self.attrs["frames"])
        self.patch = int(self.attrs["patch"])
        self.units = str(self.attrs["units"])
        self.variable = str(self.attrs["variable"])
        self._n = int(self.attrs["samples"][split])
        self.curvilinear = self.attrs.get("grid") == "curvilinear"
        # coordinates are small ([N, H] each, or the domain's [rows, cols] once): read once
        self._domain: dict[str, np.ndarray] | None = None
        self._lat: np.ndarray | None = None
        self._lon: np.ndarray | None = None
        if self.curvilinear:
            names = ("y0", "x0", "lat", "lon", "lat_c", "lon_c", "area")
            self._domain = {k: np.asarray(arrays[k][:]) for k in names}
        else:
            self._lat = np.asarray(arrays["lat"][:], dtype=np.float64)
            self._lon = np.asarray(arrays["lon"][:], dtype=np.float64)
        self._cache: dict[str, np.ndarray] | None = None
        if cache:
            self._cache = {k: np.asarray(arrays[k][:]) for k in ("hr", "lr")}
        self._arrays: dict[str, Any] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self._n

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"], state["_pid"] = None, None  # reopened in the receiving process
        return state

    def _read(self, name: str, i: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[name][i]
        if self._arrays is None or self._pid != os.getpid():
            self._arrays = split_arrays(self.path, self.split)
            self._pid = os.getpid()
        return np.asarray(self._arrays[name][i])

    @property
    def lat(self) -> np.ndarray:
        """Latitudes ``[N, H]`` (degrees) of a regular store's patches, one row per sample."""
        return self._regular("lat", self._lat)

    @property
    def lon(self) -> np.ndarray:
        """Longitudes ``[N, W]`` (degrees) of a regular store's patches, one row per sample."""
        return self._regular("lon", self._lon)

    def _regular(self, name: str, value: np.ndarray | None) -> np.ndarray:
        if value is None:
            raise StoreError(
                f"store {str(self.path)!r} was cut from a curvilinear source: its patches have "
                f"2-D coordinates, not 1-D {name}; use dataset.grid(i) (a CurvilinearGrid: "
                "lat, lon, corners, area, spacing, orientation) for the cells of sample i"
            )
        return value

    def grid(self, index: int) -> Grid | CurvilinearGrid:
        """The fine cells of sample ``index``: its :class:`~climdown.grid.Grid`, or in a store cut
        from a curvilinear source its :class:`~climdown.grid.CurvilinearGrid` (the domain's
        window: 2-D centres, corners and the areas the store holds; without the grid mapping,
        which the root attribute ``grid_mapping`` records)."""
        i = self._check_index(index)
        if self._domain is None:
            return Grid(self.lat[i], self.lon[i])
        d, p = self._domain, self.patch
        y, x = int(d["y0"][i]), int(d["x0"][i])
        cells, corners = np.s_[y : y + p, x : x + p], np.s_[y : y + p + 1, x : x + p + 1]
        return CurvilinearGrid(
            d["lat"][cells],
            d["lon"][cells],
            d["lat_c"][corners],
            d["lon_c"][corners],
            cell_areas=d["area"][cells],
        )

    def area(self, index: int) -> np.ndarray:
        """Fine-cell areas ``[H, W]`` in m^2 of sample ``index`` (float64)."""
        i = self._check_index(index)
        if self._domain is not None:
            d, p = self._domain, self.patch
            y, x = int(d["y0"][i]), int(d["x0"][i])
            return np.asarray(d["area"][y : y + p, x : x + p], dtype=np.float64)
        return Grid(self.lat[i], self.lon[i]).area

    def _check_index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"index {index} out of range for split {self.split!r} of {self._n}")
        return i

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = self._check_index(index)
        hr = torch.from_numpy(self._read("hr", i)).to(self.dtype).unsqueeze(1)  # [T, 1, H, W]
        lr = torch.from_numpy(self._read("lr", i)).to(self.dtype).unsqueeze(1)  # [T, 1, h, w]
        area = torch.from_numpy(self.area(i)).to(self.dtype)  # [H, W]
        return {"lr": lr, "hr": hr, "area": area, "index": i}

    def __repr__(self) -> str:
        return (
            f"PatchDataset({str(self.path)!r}, split={self.split!r}, samples={self._n}, "
            f"frames={self.frames}, patch={self.patch}, factor={self.factor}, "
            f"cached={self._cache is not None})"
        )


def make_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with seedable shuffling.

    Parameters
    ----------
    dataset : torch Dataset
        Usually a :class:`PatchDataset`.
    batch_size : int
        Samples per batch; a batch holds ``lr`` [B, T, C, h, w], ``hr`` [B, T, C, H, W],
        ``area`` [B, H, W] and ``index`` [B].
    shuffle : bool
        Shuffle the order each epoch.
    seed : int
        Seed of the shuffling generator: two loaders made with the same seed yield the same
        order, epoch by epoch.
    num_workers : int
        Worker processes (each opens the store itself).
    drop_last : bool
        Drop a last incomplete batch.

    Returns
    -------
    torch.utils.data.DataLoader
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        drop_last=drop_last,
    )


def patch_spacing(dataset: PatchDataset) -> dict[str, list[float]]:
    """Grid spacing ``[dlat, dlon]`` (deg, :attr:`climdown.grid.Grid.spacing`) of a split's
    patches, fine and coarse: what a checkpoint records of its training data and
    :class:`climdown.inference.Downscaler` (and ``evaluate_checkpoint``) compare inputs with."""
    fine = dataset.grid(0)  # a Grid, or a CurvilinearGrid for a store cut from regional output
    return {
        "hr_spacing_deg": list(fine.spacing),
        "lr_spacing_deg": list(fine.coarsen(int(dataset.factor)).spacing),
    }
