"""Points on the unit sphere: the pointwise maths :mod:`climdown.grid` builds curvilinear grids on.

This module is :mod:`climdown.grid`'s (which re-exports what users need); nothing else imports
it. It knows unit vectors, spherical triangles and quadrilaterals, the rotation of a rotated
pole and the subdivision of a quadrilateral, all in float64 numpy; it knows nothing of grids,
xarray or CF.

* ``xyz = (cos(lat) cos(lon), cos(lat) sin(lon), sin(lat))``.
* The area of a spherical triangle (unit sphere) is its spherical excess ``E``, computed with
  the Van Oosterom-Strackee formula ``tan(E / 2) = a . (b x c) / (1 + a.b + b.c + c.a)``
  (atan2 form: stable for cells of metres and of continents alike). It is signed: positive
  when ``a, b, c`` run anticlockwise seen from outside the sphere.
* A quadrilateral ``a, b, c, d`` (edges are great-circle arcs) is the triangles ``a b c`` and
  ``a c d``; its signed area is their sum (the same for either diagonal).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "to_xyz",
    "to_latlon",
    "triangle_area",
    "quad_area",
    "quad_turns",
    "rotation_matrix",
    "subdivide",
    "normalise",
]


def to_xyz(lat: Any, lon: Any) -> np.ndarray:
    """Unit vectors ``[..., 3]`` of points at ``lat``, ``lon`` (degrees)."""
    la = np.deg2rad(np.asarray(lat, dtype=np.float64))
    lo = np.deg2rad(np.asarray(lon, dtype=np.float64))
    c = np.cos(la)
    return np.stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)], axis=-1)


def normalise(v: np.ndarray) -> np.ndarray:
    """``v / |v|`` along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def to_latlon(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees, longitude in -180..180) of vectors ``[..., 3]``.

    The vectors need not be unit length.
    """
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    lon = np.rad2deg(np.arctan2(y, x))
    return lat, lon


def triangle_area(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed spherical excess (steradians) of the triangles with unit-vector corners ``[..., 3]``.

    Notes
    -----
    Van Oosterom and Strackee (1983): ``tan(E/2) = a.(b x c) / (1 + a.b + b.c + c.a)``.
    Positive for corners anticlockwise seen from outside the sphere.
    """
    num = np.einsum("...i,...i->...", a, np.cross(b, c))
    den = 1.0 + np.einsum("...i,...i->...", a, b)
    den = den + np.einsum("...i,...i->...", b, c) + np.einsum("...i,...i->...", c, a)
    return 2.0 * np.arctan2(num, den)


def quad_area(corners: np.ndarray) -> np.ndarray:
    """Signed areas (steradians) of quadrilaterals ``[..., 4, 3]`` with great-circle edges."""
    a, b, c, d = (corners[..., k, :] for k in range(4))
    return triangle_area(a, b, c) + triangle_area(a, c, d)


def quad_turns(corners: np.ndarray) -> np.ndarray:
    """Which way the path turns at each corner of quadrilaterals ``[..., 4, 3]``: ``[..., 4]``.

    ``sign(p_{k-1} . (p_k x p_{k+1}))``: +1 anticlockwise, -1 clockwise seen from outside, 0
    where three corners lie on one great circle. A convex quadrilateral turns the same way at
    all four corners; a self-intersecting (bow-tie) or concave one does not.
    """
    prev = np.roll(corners, 1, axis=-2)
    nxt = np.roll(corners, -1, axis=-2)
    return np.sign(np.einsum("...i,...i->...", prev, np.cross(corners, nxt)))


def rotation_matrix(pole_lat: float, pole_lon: float, grid_lon: float = 0.0) -> np.ndarray:
    """The 3 x 3 matrix taking rotated-frame unit vectors to geographic ones (CF rotated pole).

    Parameters
    ----------
    pole_lat, pole_lon : float
        ``grid_north_pole_latitude`` and ``grid_north_pole_longitude`` (degrees): where the
        rotated frame's north pole lies in geographic coordinates.
    grid_lon : float
        ``north_pole_grid_longitude`` (degrees): the longitude, in the rotated frame, of the
        geographic north pole (0 in almost every file).

    Notes
    -----
    ``M = Rz(pole_lon) Ry(90 - pole_lat) Rz(180 - grid_lon)``: the rotated point (0, 0) lies at
    geographic ``(90 - pole_lat, pole_lon + 180)`` when ``grid_lon = 0``, as in PROJ's
    ``ob_tran`` and cartopy's ``RotatedPole``. A rotation preserves areas: a cell bounded by
    rotated parallels and meridians has the closed-form area of a latitude/longitude cell.
    """

    def rz(deg: float) -> np.ndarray:
        t = np.deg2rad(deg)
        return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0, 0, 1.0]])

    t = np.deg2rad(90.0 - pole_lat)
    ry = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
    return rz(pole_lon) @ ry @ rz(180.0 - grid_lon)


def subdivide(corners: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear subdivision of each cell of a corner mesh ``[H+1, W+1, ...]`` into ``f x f``.

    Returns the ``[H f + 1, W f + 1, ...]`` mesh whose corner ``(i f + p, j f + q)`` is the
    bilinear interpolation at ``(p / f, q / f)`` of the four corners of cell ``(i, j)``. The
    coarse corners are kept exactly, and a point on a coarse edge depends only on that edge's
    two corners, so neighbouring cells agree on their shared edges.
    """
    f = int(factor)
    t = np.arange(f + 1) / f
    h, w = corners.shape[0] - 1, corners.shape[1] - 1
    rest = corners.shape[2:]
    c00, c01 = corners[:-1, :-1], corners[:-1, 1:]
    c10, c11 = corners[1:, :-1], corners[1:, 1:]
    extra = (None,) * len(rest)
    p = t[:, None, *extra]  # along rows
    q = t[None, :, *extra]  # along columns
    # [h, w, f+1, f+1, ...]
    cell = (
        c00[:, :, None, None] * ((1 - p) * (1 - q))
        + c01[:, :, None, None] * ((1 - p) * q)
        + c10[:, :, None, None] * (p * (1 - q))
        + c11[:, :, None, None] * (p * q)
    )
    out = np.empty((h * f + 1, w * f + 1, *rest), dtype=np.float64)
    inner = cell[:, :, :f, :f]  # every fine corner once, from the cell it starts
    out[: h * f, : w * f] = np.moveaxis(inner, 2, 1).reshape(h * f, w * f, *rest)
    out[: h * f, w * f] = cell[:, -1, :f, f].reshape(h * f, *rest)  # last column of corners
    out[h * f, : w * f] = cell[-1, :, f, :f].reshape(w * f, *rest)  # last row of corners
    out[h * f, w * f] = corners[-1, -1]
    return out
