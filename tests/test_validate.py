"""The shared config checks: one implementation each, the caller's error class, helpful messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from climdown.errors import ConfigError, GridShapeError, RecipeError
from climdown.validate import check_keys, factor, integer, number, output_folder, positive_int


@pytest.mark.parametrize("good", [1, 4, np.int64(8)])
def test_positive_int_accepts_integers(good) -> None:
    assert positive_int(good, "width") == int(good)
    assert type(positive_int(good, "width")) is int


@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", True, None, math.nan])
def test_positive_int_refuses(bad) -> None:
    with pytest.raises(ConfigError, match=r"width must be a positive integer, got"):
        positive_int(bad, "width")


def test_integer_minimum_and_error_class() -> None:
    assert integer(0, "seed", minimum=0) == 0
    with pytest.raises(RecipeError, match=r"frames must be an integer >= 1, got 0; e.g. frames: 1"):
        integer(0, "frames", minimum=1, error=RecipeError, example="frames: 1")
    with pytest.raises(GridShapeError, match="factor"):
        factor(0, error=GridShapeError)
    assert factor(4) == 4


@pytest.mark.parametrize(
    ("value", "positive", "match"),
    [
        ("1e-3", False, "must be a number"),
        (True, False, "must be a number"),
        (math.nan, False, "finite number"),
        (math.inf, False, "finite number"),
        (0.0, True, "positive finite number"),
        (-1, True, "positive finite number"),
    ],
)
def test_number_refuses(value, positive, match) -> None:
    with pytest.raises(ConfigError, match=match):
        number(value, "lr", positive=positive)


def test_number_accepts() -> None:
    assert number(1, "lr", positive=True) == 1.0
    assert number(-2.5, "offset") == -2.5


def test_check_keys_names_the_closest_key_and_the_section() -> None:
    assert check_keys({"lat_min": 1}, ["lat_min", "lat_max"], "region") == {"lat_min": 1}
    with pytest.raises(RecipeError, match=r"unknown key 'region\.lat_mn': did you mean 'lat_min'"):
        check_keys({"lat_mn": 1}, ["lat_min", "lat_max"], "region", error=RecipeError)
    # the top level and descriptions do not qualify keys
    with pytest.raises(ConfigError, match=r"unknown key 'epoch': did you mean 'epochs'"):
        check_keys({"epoch": 1}, ["epochs"], "training config")
    with pytest.raises(ConfigError, match=r"unknown key 'fctor'"):
        check_keys({"fctor": 4}, ["factor"], "recipe")
    with pytest.raises(ConfigError, match=r"missing key 'region\.lat_max'"):
        check_keys({"lat_min": 1}, ["lat_min", "lat_max"], "region", required=["lat_max"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        check_keys([("a", 1)], ["a"], "region")


def test_output_folder_creates_a_folder_and_refuses_a_file(tmp_path) -> None:
    made = output_folder(tmp_path / "a" / "b", "out")
    assert made.is_dir() and output_folder(made, "out") == made  # an existing folder is fine
    data = tmp_path / "data.nc"
    data.write_bytes(b"CDF\x01")
    with pytest.raises(ConfigError, match=r"out '.*data\.nc' is a file, not a folder"):
        output_folder(data, "out")
    assert data.read_bytes() == b"CDF\x01"


def test_demo_refuses_a_file_as_its_out_folder(tmp_path) -> None:
    from climdown.study.demo import run_demo

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        run_demo(out=notes, quick=True)
    assert notes.read_text() == "mine" and sorted(tmp_path.iterdir()) == [notes]
