"""The patch plan (climdown.data.patches): windows, splits without leaks, lattices, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest

from climdown.data.patches import (
    describe_patch,
    patch_columns,
    patch_coords,
    plan_split,
    plan_splits,
    source_window,
)
from climdown.data.recipe import Recipe
from climdown.errors import GridShapeError, RecipeError
from climdown.grid import Grid, wrap_lon

TIME = np.arange("2020-01-01T00", "2020-01-03T00", dtype="datetime64[h]").astype("datetime64[ns]")
LAT = np.arange(39.5, -40.0, -1.0)  # 80 rows, descending like ERA5
LON = np.arange(0.0, 360.0, 1.0)


def _recipe(**over: object) -> Recipe:
    raw = {
        "source": "synthetic",
        "factor": 4,
        "patch": 16,
        "splits": {
            "train": {"start": "2020-01-01", "end": "2020-01-02", "samples": 50},
            "val": {"start": "2020-01-02", "end": "2020-01-03", "samples": 20},
        },
        "output": "unused.zarr",
    }
    raw.update(over)
    return Recipe.from_mapping(raw)


def _keys(plan) -> set[tuple[int, int, int]]:
    return set(zip(plan.t[:, 0].tolist(), plan.y0.tolist(), plan.x0.tolist(), strict=True))


def test_splits_take_only_their_own_time_steps_on_the_factor_lattice():
    r = _recipe()
    plans = plan_splits(r, TIME, LAT, LON)
    assert [p.split.name for p in plans] == ["train", "val"] and [p.n for p in plans] == [50, 20]
    for plan in plans:
        t = TIME[plan.t]
        assert t.min() >= plan.split.start.to_datetime64() and t.max() < plan.split.end
        assert np.all(plan.y0 % 4 == 0) and np.all(plan.x0 % 4 == 0)
        assert np.all(plan.y0 + 16 <= LAT.size) and np.all(plan.x0 + 16 <= LON.size)
        assert len(_keys(plan)) == plan.n  # distinct samples
        assert np.all(np.diff(plan.t[:, 0]) >= 0)  # time-major order


def test_plans_are_seeded_per_split():
    a = plan_splits(_recipe(), TIME, LAT, LON)
    b = plan_splits(_recipe(), TIME, LAT, LON)
    c = plan_splits(_recipe(sampling={"seed": 1}), TIME, LAT, LON)
    assert _keys(a[0]) == _keys(b[0]) and _keys(a[0]) != _keys(c[0])
    # adding a test split does not change train
    splits = {
        "train": {"start": "2020-01-01", "end": "2020-01-02", "samples": 50},
        "test": {"start": "2020-01-02T12:00", "end": "2020-01-03", "samples": 5},
    }
    with_test = plan_splits(_recipe(splits=splits), TIME, LAT, LON)
    assert _keys(with_test[0]) == _keys(a[0])


def test_sequences_never_straddle_a_split_or_bridge_a_gap():
    time = np.delete(TIME, 5)  # hour 5 is missing from the source
    splits = {
        "train": {"start": "2020-01-01", "end": "2020-01-01T12:00"},
        "val": {"start": "2020-01-01T12:00", "end": "2020-01-02"},
    }
    r = _recipe(frames=3, splits=splits, sampling={"mode": "stride", "time_stride": 1})
    for plan in plan_splits(r, time, LAT, LON):
        t = time[plan.t]
        assert np.all(np.diff(t, axis=1) == np.timedelta64(1, "h"))  # consecutive hours
        assert t.min() >= plan.split.start.to_datetime64() and t.max() < plan.split.end
    train = plan_splits(r, time, LAT, LON)[0]
    # hours 0..11 minus 5: starts 0, 1, 2 and 6..9 (not 3, 4: their window holds the gap)
    assert sorted(set(time[train.t[:, 0]].astype("datetime64[h]").astype(int) % 24)) == [
        0,
        1,
        2,
        6,
        7,
        8,
        9,
    ]
    with pytest.raises(RecipeError, match="too few for one sequence of 30"):
        plan_splits(_recipe(frames=30, splits=splits, sampling={"mode": "stride"}), time, LAT, LON)


def test_stride_takes_every_lattice_position():
    splits = {"train": {"start": "2020-01-01", "end": "2020-01-01T02:00"}}
    r = _recipe(splits=splits, sampling={"mode": "stride", "stride": 8})
    (plan,) = plan_splits(r, TIME, LAT, LON)
    ny, nx = len(range(0, 80 - 16 + 1, 8)), len(range(0, 360 - 16 + 1, 8))
    assert plan.n == 2 * ny * nx and len(_keys(plan)) == plan.n
    assert set(plan.y0.tolist()) == set(range(0, 65, 8))


def test_spatial_splits_keep_patches_inside_their_boxes():
    day = {"start": "2020-01-01", "end": "2020-01-02"}
    splits = {
        "train": {**day, "region": {"lat_min": -40, "lat_max": 40, "lon_min": 0, "lon_max": 179}},
        "val": {**day, "region": {"lat_min": -40, "lat_max": 40, "lon_min": -180, "lon_max": -1}},
    }
    r = _recipe(splits=splits, sampling={"mode": "stride"})
    lon = wrap_lon(LON, -180.0)  # the source in -180..180, the val box too
    train, val = plan_splits(r, TIME, LAT, lon)
    for plan, inside in ((train, lambda x: x >= 0), (val, lambda x: x < 0)):
        cols = lon[plan.x0[:, None] + np.arange(16)[None, :]]
        assert plan.n > 0 and np.all(inside(cols))
    small = {"train": {**day, "region": {**splits["train"]["region"], "lon_max": 10}}}
    with pytest.raises(RecipeError, match="holds no whole 16 x 16 patch"):
        plan_splits(_recipe(splits=small, sampling={"mode": "stride"}), TIME, LAT, LON)


def test_bad_requests_name_the_split_and_the_fix():
    r = _recipe()
    with pytest.raises(RecipeError, match=r"splits.train .* asks for 50 samples but only 24"):
        plan_split(r, r.split("train"), TIME, LAT[:16], LON[:16])
    with pytest.raises(RecipeError, match="splits.val .* holds no time step of the source"):
        plan_split(r, r.split("val"), TIME[:24], LAT, LON)


def test_source_window_cuts_time_and_a_box_across_the_date_line():
    region = {"lat_min": -20.0, "lat_max": 20.0, "lon_min": 170.0, "lon_max": 200.0}
    r = _recipe(region=region)
    lon = wrap_lon(LON, -180.0)  # -180..179: the box wraps round the end of the axis
    window = source_window(r, TIME, LAT, lon)
    assert window["time"] == slice(0, 48)
    assert window["lat"] == slice(20, 60)  # 19.5 .. -19.5
    cols = lon[window["lon"]]
    np.testing.assert_allclose(wrap_lon(cols), np.arange(170.0, 201.0))  # eastward, one piece
    assert source_window(r, TIME, LAT, LON)["lon"] == slice(170, 201)  # 0..360: a slice
    with pytest.raises(GridShapeError, match="holds 2 x 31 cells, fewer than one 16 x 16 patch"):
        source_window(_recipe(region={**region, "lat_max": -18.0}), TIME, LAT, lon)
    with pytest.raises(RecipeError, match="no time step in"):
        source_window(r, TIME + np.timedelta64(30, "D"), LAT, LON)
    with pytest.raises(RecipeError, match="not strictly increasing"):
        source_window(r, TIME[::-1], LAT, LON)


def test_patch_coords_follow_the_plan_and_grid_coarsen():
    r = _recipe()
    plan = plan_splits(r, TIME, LAT, LON)[0]
    c = patch_coords(r, plan, TIME, LAT, LON)
    assert c["lat"].shape == (50, 16) and c["lon_lr"].shape == (50, 4)
    assert c["time"].shape == (50, 1) and c["time"].dtype == np.dtype("datetime64[ns]")
    i = 7
    np.testing.assert_array_equal(c["lat"][i], LAT[plan.y0[i] : plan.y0[i] + 16])
    coarse = Grid(c["lat"][i], c["lon"][i]).coarsen(4)
    np.testing.assert_array_equal(c["lat_lr"][i], coarse.lat)
    np.testing.assert_array_equal(c["lon_lr"][i], coarse.lon)
    text = describe_patch(c, i)
    assert text.startswith(str(c["time"][i, 0].astype("datetime64[s]")))
    assert f"lon {c['lon'][i, 0]:.2f}..{c['lon'][i, -1]:.2f}" in text


SEAM_BOXES = [  # (lon_min, lon_max) of a split's box: across meridian 0, the date line, both
    (-20.0, 20.0),
    (170.0, 200.0),
    (-96.0, 191.9),
    (10.0, 100.0),  # contrast: crosses no seam in either convention
]
WINDOWS = [  # the recipe's top-level region (None: the whole source), as lon_min, lon_max
    None,
    (0.0, 360.0),
    (-180.0, 180.0),
    (-96.0, 264.0),
]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("box", SEAM_BOXES)
def test_a_split_box_takes_the_same_patches_whatever_the_longitude_convention(box, window):
    p, stride = 16, 4
    day = {"start": "2020-01-01", "end": "2020-01-01T02:00"}
    region = {"lat_min": -40.0, "lat_max": 40.0, "lon_min": box[0], "lon_max": box[1]}
    over = (
        {} if window is None else {"region": {**region, "lon_min": window[0], "lon_max": window[1]}}
    )
    r = _recipe(
        splits={"train": {**day, "region": region}},
        sampling={"mode": "stride", "stride": stride},
        **over,
    )
    ncols = np.count_nonzero(r.split("train").region.lon_mask(LON))
    expected = 2 * len(range(0, 80 - p + 1, stride)) * len(range(0, ncols - p + 1, stride))
    picked = []
    for lon in (LON, np.arange(-180.0, 180.0, 1.0)):  # the source in either convention
        w = source_window(r, TIME, LAT, lon)
        (plan,) = plan_splits(r, TIME[w["time"]], LAT[w["lat"]], lon[w["lon"]])
        assert plan.n == plan.available == expected, (lon[0], plan.n, expected)
        cols = patch_coords(r, plan, TIME[w["time"]], LAT[w["lat"]], lon[w["lon"]])["lon"]
        assert np.all(r.split("train").region.lon_mask(cols))  # inside the box
        assert np.all(wrap_lon(np.diff(cols, axis=1)) == 1.0)  # eastward, one piece
        picked.append(set(map(tuple, wrap_lon(cols).tolist())))
    assert picked[0] == picked[1]  # the same patches, not just as many


def test_patch_columns_wrap_only_past_the_window_edge():
    np.testing.assert_array_equal(
        patch_columns(np.array([0, 356]), 6, 360)[1], [356, 357, 358, 359, 0, 1]
    )
    np.testing.assert_array_equal(patch_columns(np.array([0]), 4, 360)[0], [0, 1, 2, 3])
