"""Training-set recipes: frozen dataclasses loaded from YAML and validated before any work.

A recipe says where the data come from (``source``, ``variable``, ``region``, ``time``), how
patches are cut (``factor``, ``patch``, ``frames``, ``sampling``), how they are split by time
(``splits``), how they are normalised and chunked, and where the store goes (``output``).
:func:`load_recipe` reads one with :func:`yaml.safe_load` and checks every key; an unknown key
or a bad value raises :class:`~climdown.errors.RecipeError` naming the key and the fix.
:func:`climdown.data.store.build_store` turns a recipe into a zarr store. ``docs/data.md``
lists every key with its meaning and default.

Splits are half-open time intervals ``[start, end)``: a split ending at ``2020-01-03`` and the
next one starting there share no time step, and a sequence of ``frames`` steps is only drawn
when all of its steps lie inside one split, so nothing leaks between splits.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from climdown.errors import RecipeError

__all__ = [
    "STORE_FORMAT",
    "SPLIT_NAMES",
    "SCALE_METHODS",
    "Region",
    "TimeRange",
    "Split",
    "Sampling",
    "Normalisation",
    "Recipe",
    "load_recipe",
]

#: Version of the store layout; part of the recipe hash so a layout change forces a rebuild.
STORE_FORMAT = 1
#: Split names a recipe may use, in store order.
SPLIT_NAMES = ("train", "val", "test")
#: Named scales for the scale-only normalisation (``x / scale``), computed on train HR.
SCALE_METHODS = ("max", "std", "mean")

_TOP_KEYS = {
    "name": "a short name for the data set (default: the file name)",
    "source": "'synthetic', 'sample:rhine', a path or URL, or a mapping with 'kind'",
    "variable": "the variable to read (default 'tcw')",
    "region": "{lat_min, lat_max, lon_min, lon_max} in degrees (default: the whole source)",
    "time": "{start, end}: the time range read from the source (default: the splits' union)",
    "factor": "integer downscaling factor, e.g. 4",
    "patch": "HR patch size in cells, e.g. 128 (divisible by factor)",
    "frames": "consecutive time steps per sample (default 1)",
    "splits": "{train: {start, end, samples}, val: {...}, test: {...}}",
    "sampling": "{mode: random|stride, seed, stride, time_stride}",
    "normalisation": "{scale: max|std|mean|<number in kg m-2>}",
    "chunks": "samples per chunk (default 64)",
    "output": "path of the zarr store (default '<name>.zarr'; relative to the current directory)",
}
_REGION_KEYS = ("lat_min", "lat_max", "lon_min", "lon_max")
_TIME_KEYS = ("start", "end")
_SPLIT_KEYS = ("start", "end", "samples", "region")
_SAMPLING_KEYS = ("mode", "seed", "stride", "time_stride")
_NORM_KEYS = ("scale",)


# ---------------------------------------------------------------------------------------
# dataclasses
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """A latitude/longitude box in degrees; cells whose centres lie inside it are used."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(lat_min, lat_max, lon_min, lon_max)``."""
        return (self.lat_min, self.lat_max, self.lon_min, self.lon_max)

    def disjoint(self, other: Region) -> bool:
        """True when the boxes share no point (longitudes compared on the circle)."""
        if self.lat_max < other.lat_min or other.lat_max < self.lat_min:
            return True
        a0, la = self.lon_min % 360.0, self.lon_max - self.lon_min
        b0, lb = other.lon_min % 360.0, other.lon_max - other.lon_min
        return bool((b0 - a0) % 360.0 > la and (a0 - b0) % 360.0 > lb)

    def contains_lat(self, lat: Any) -> Any:
        """Mask of latitudes inside the box."""
        eps = 1e-9
        return (lat >= self.lat_min - eps) & (lat <= self.lat_max + eps)

    def lon_offset(self, lon: Any) -> Any:
        """Degrees east of ``lon_min`` (0..360), the order in which the box's columns run."""
        offset = (lon - self.lon_min) % 360.0
        return np.where(offset > 360.0 - 1e-9, 0.0, offset)

    def contains_lon(self, lon: Any) -> Any:
        """Mask of longitudes inside the box (across the date line or meridian 0 too)."""
        return self.lon_offset(lon) <= self.lon_max - self.lon_min + 1e-9


@dataclass(frozen=True)
class TimeRange:
    """A half-open time interval ``[start, end)`` (tz-naive, UTC)."""

    start: pd.Timestamp
    end: pd.Timestamp

    def overlaps(self, other: TimeRange) -> bool:
        """True when the two half-open intervals share any instant."""
        return bool(self.start < other.end and other.start < self.end)

    def contains(self, other: TimeRange) -> bool:
        """True when ``other`` lies inside this interval."""
        return bool(self.start <= other.start and other.end <= self.end)


@dataclass(frozen=True)
class Split:
    """One split: a name, a half-open time interval and a sample count (``None``: all)."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp
    samples: int | None = None
    region: Region | None = None  # a spatial split: patches lie wholly inside this box

    @property
    def range(self) -> TimeRange:
        """The split's :class:`TimeRange`."""
        return TimeRange(self.start, self.end)


@dataclass(frozen=True)
class Sampling:
    """How patch positions and start times are chosen.

    ``mode="random"`` draws ``samples`` distinct (time, row, column) positions with ``seed``;
    ``mode="stride"`` takes every position on a lattice of ``stride`` cells and
    ``time_stride`` time steps (a seeded subset of ``samples`` of them when given).
    """

    mode: str = "random"
    seed: int = 0
    stride: int | None = None
    time_stride: int | None = None


@dataclass(frozen=True)
class Normalisation:
    """Scale-only normalisation: models see ``x / scale``; ``scale`` is named or a number."""

    scale: str | float = "max"


@dataclass(frozen=True)
class Recipe:
    """A validated training-set recipe (see :func:`load_recipe` and ``docs/data.md``)."""

    name: str
    source: str | dict[str, Any]
    factor: int
    patch: int
    splits: tuple[Split, ...]
    output: Path
    variable: str = "tcw"
    region: Region | None = None
    time: TimeRange | None = None
    frames: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    normalisation: Normalisation = field(default_factory=Normalisation)
    chunks: int = 64
    text: str = field(default="", repr=False, compare=False)

    @property
    def patch_lr(self) -> int:
        """LR patch size in coarse cells (``patch // factor``)."""
        return self.patch // self.factor

    @property
    def split_names(self) -> tuple[str, ...]:
        """Names of the splits, in store order."""
        return tuple(s.name for s in self.splits)

    def split(self, name: str) -> Split:
        """The split called ``name``.

        Raises
        ------
        RecipeError
            If the recipe has no such split.
        """
        for s in self.splits:
            if s.name == name:
                return s
        raise RecipeError(f"recipe {self.name!r} has no split {name!r}; it has {self.split_names}")

    @property
    def time_range(self) -> TimeRange:
        """The time range read from the source: ``time`` or the union of the splits."""
        if self.time is not None:
            return self.time
        return TimeRange(min(s.start for s in self.splits), max(s.end for s in self.splits))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain YAML/JSON-able values, every default filled in."""
        return {
            "name": self.name,
            "source": self.source if isinstance(self.source, str) else dict(self.source),
            "variable": self.variable,
            "region": None
            if self.region is None
            else dict(zip(_REGION_KEYS, self.region.as_tuple(), strict=True)),
            "time": None
            if self.time is None
            else {"start": self.time.start.isoformat(), "end": self.time.end.isoformat()},
            "factor": self.factor,
            "patch": self.patch,
            "frames": self.frames,
            "splits": {
                s.name: {
                    "start": s.start.isoformat(),
                    "end": s.end.isoformat(),
                    "samples": s.samples,
                    **(
                        {}
                        if s.region is None
                        else {"region": dict(zip(_REGION_KEYS, s.region.as_tuple(), strict=True))}
                    ),
                }
                for s in self.splits
            },
            "sampling": {
                "mode": self.sampling.mode,
                "seed": self.sampling.seed,
                "stride": self.sampling.stride,
                "time_stride": self.sampling.time_stride,
            },
            "normalisation": {"scale": self.normalisation.scale},
            "chunks": self.chunks,
            "output": str(self.output),
        }

    @property
    def hash(self) -> str:
        """SHA-256 of everything that determines the store's content.

        ``name``, ``output`` and the YAML text (comments, key order) are left out, so moving
        the output or rewording comments does not force a rebuild; ``STORE_FORMAT`` is in.
        """
        d = self.to_dict()
        for k in ("name", "output"):
            d.pop(k)
        d["store_format"] = STORE_FORMAT
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------
def load_recipe(recipe: str | os.PathLike[str] | Mapping[str, Any]) -> Recipe:
    """Read and validate a recipe from a YAML file or a mapping.

    Parameters
    ----------
    recipe : str, path or mapping
        Path to a YAML file (read with :func:`yaml.safe_load`) or the already-parsed mapping.

    Returns
    -------
    Recipe
        Frozen, with defaults filled in, ``output`` and local ``source`` paths made absolute
        against the current directory.

    Raises
    ------
    RecipeError
        For a missing file, an unknown or missing key, or a bad value; the message names the
        key and the fix. Nothing is opened or written before this check passes.
    """
    if isinstance(recipe, Mapping):
        raw = dict(recipe)
        text = yaml.safe_dump(_plain(raw), sort_keys=False)
        default_name = "recipe"
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError(
                f"recipe file {str(path)!r} not found (current directory {os.getcwd()!r}); "
                "pass the path of a YAML recipe, e.g. recipes/tcw4.yaml"
            )
        text = path.read_text()
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise RecipeError(
                f"recipe {str(path)!r} must be a YAML mapping of keys (source:, factor:, ...), "
                f"got {type(raw).__name__}"
            )
        raw = dict(raw)
        default_name = path.stem
    return _build(raw, text, default_name)


def _plain(obj: Any) -> Any:
    """Turn dates and tuples into YAML-safe plain values for the recipe text."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (_dt.date, pd.Timestamp)):
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _region(raw: Any, where: str) -> Region:
    r = _check_keys(raw, _REGION_KEYS, where)
    missing = [k for k in _REGION_KEYS if k not in r]
    if missing:
        raise RecipeError(f"{where} needs {', '.join(missing)} (degrees); or leave it out")
    region = Region(*(_float(r[k], f"{where}.{k}") for k in _REGION_KEYS))
    if not -90.0 <= region.lat_min < region.lat_max <= 90.0:
        raise RecipeError(
            f"{where} latitudes must satisfy -90 <= lat_min < lat_max <= 90, got "
            f"lat_min={region.lat_min}, lat_max={region.lat_max}"
        )
    if not (-180.0 <= region.lon_min < region.lon_max <= 360.0) or (
        region.lon_max - region.lon_min > 360.0
    ):
        raise RecipeError(
            f"{where} longitudes must satisfy lon_min < lon_max within -180..360 and span at "
            f"most 360 degrees, got lon_min={region.lon_min}, lon_max={region.lon_max}; "
            "for a box across the date line write e.g. lon_min: 170, lon_max: 200"
        )
    return region


def _check_keys(d: Any, allowed: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise RecipeError(
            f"{where} must be a mapping with keys {', '.join(allowed)}, got {d!r} "
            f"({type(d).__name__})"
        )
    for key in d:
        if key not in allowed:
            full = str(key) if where == "recipe" else f"{where}.{key}"
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RecipeError(
                f"unknown key {full!r}: {hint}allowed keys are {', '.join(allowed)}; "
                "remove or rename it"
            )
    return dict(d)


def _int(value: Any, key: str, minimum: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecipeError(f"{key} must be an integer >= {minimum}, got {value!r}; e.g. {example}")
    return int(value)


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{key} must be a number in degrees, got {value!r}")
    return float(value)


def _time(value: Any, key: str) -> pd.Timestamp:
    if isinstance(value, bool) or not isinstance(value, (str, _dt.date, pd.Timestamp)):
        raise RecipeError(
            f"{key} must be a date or time such as 2020-01-01 or '2020-01-01T06:00', got {value!r}"
        )
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise RecipeError(
            f"{key}: cannot read {value!r} as a time ({exc}); write e.g. 2020-01-01 or "
            "'2020-01-01T06:00'"
        ) from exc
    if t is pd.NaT:
        raise RecipeError(f"{key} is not a time: {value!r}")
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t


def _interval(d: Mapping[str, Any], where: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    for k in _TIME_KEYS:
        if k not in d:
            raise RecipeError(f"{where} needs '{k}' (a date or time, e.g. 2020-01-01)")
    start, end = _time(d["start"], f"{where}.start"), _time(d["end"], f"{where}.end")
    if not start < end:
        raise RecipeError(
            f"{where}: start {start} must be before end {end} (intervals are [start, end))"
        )
    return start, end


def _source(value: Any) -> str | dict[str, Any]:
    if isinstance(value, Mapping):
        src = _plain(dict(value))
        if not isinstance(src.get("kind"), str) or not src["kind"]:
            raise RecipeError(
                f"source mapping needs a 'kind' (e.g. {{kind: synthetic, seed: 0}}), got {src!r}"
            )
        if isinstance(src.get("path"), str):
            src["path"] = _source(src["path"])  # same path rules as a plain string
        return src
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(
            "source must be 'synthetic', 'sample:rhine', a file path or URL of ERA5 data, or a "
            f"mapping with 'kind'; got {value!r}"
        )
    value = value.strip()
    if value == "synthetic" or value.startswith("sample:") or "://" in value:
        return value
    path = Path(value).expanduser()
    if not path.exists():
        raise RecipeError(
            f"source {value!r} is not 'synthetic', 'sample:NAME' or a URL, and no such file or "
            f"directory exists (relative paths are read from {os.getcwd()!r}); fix the path or "
            "use source: synthetic"
        )
    return str(path.resolve())


def _build(raw: dict[str, Any], text: str, default_name: str) -> Recipe:
    raw = _check_keys(raw, _TOP_KEYS, "recipe")
    for key in ("source", "factor", "patch", "splits"):
        if key not in raw:
            raise RecipeError(f"recipe is missing the required key '{key}': {_TOP_KEYS[key]}")

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise RecipeError(f"name must be a non-empty string, got {name!r}")
    source = _source(raw["source"])
    variable = raw.get("variable", "tcw")
    if not isinstance(variable, str) or not variable:
        raise RecipeError(f"variable must be a variable name such as 'tcw', got {variable!r}")

    factor = _int(raw["factor"], "factor", 2, "factor: 4")
    patch = _int(raw["patch"], "patch", 2, "patch: 128")
    if patch % factor:
        lo, hi = patch - patch % factor, patch - patch % factor + factor
        raise RecipeError(
            f"patch {patch} is not divisible by factor {factor}: the LR patch would not be whole "
            f"coarse cells; use patch: {lo} or patch: {hi}"
        )
    frames = _int(raw.get("frames", 1), "frames", 1, "frames: 3")
    chunks = _int(raw.get("chunks", 64), "chunks", 1, "chunks: 64")

    region = None if raw.get("region") is None else _region(raw["region"], "region")

    time = None
    if raw.get("time") is not None:
        t = _check_keys(raw["time"], _TIME_KEYS, "time")
        time = TimeRange(*_interval(t, "time"))

    s = raw.get("sampling") or {}
    s = _check_keys(s, _SAMPLING_KEYS, "sampling")
    mode = s.get("mode", "random")
    if mode not in ("random", "stride"):
        raise RecipeError(f"sampling.mode must be 'random' or 'stride', got {mode!r}")
    seed = _int(s.get("seed", 0), "sampling.seed", 0, "seed: 0")
    stride = s.get("stride")
    time_stride = s.get("time_stride")
    if mode == "random" and (stride is not None or time_stride is not None):
        raise RecipeError(
            "sampling.stride and sampling.time_stride only apply to mode: stride; remove them "
            "or set mode: stride"
        )
    if mode == "stride":
        stride = _int(patch if stride is None else stride, "sampling.stride", 1, f"stride: {patch}")
        if stride % factor:
            raise RecipeError(
                f"sampling.stride {stride} is not a multiple of factor {factor}: patches must sit "
                f"on the coarse grid; use stride: {max(factor, stride - stride % factor)}"
            )
        time_stride = _int(
            frames if time_stride is None else time_stride,
            "sampling.time_stride",
            1,
            "time_stride: 1",
        )
    sampling = Sampling(mode=mode, seed=seed, stride=stride, time_stride=time_stride)

    splits_raw = raw["splits"]
    splits_raw = _check_keys(splits_raw, SPLIT_NAMES, "splits")
    if "train" not in splits_raw:
        raise RecipeError("splits needs a 'train' split: {train: {start, end, samples}, val: ...}")
    splits = []
    for sname in SPLIT_NAMES:
        if sname not in splits_raw:
            continue
        sd = _check_keys(splits_raw[sname], _SPLIT_KEYS, f"splits.{sname}")
        start, end = _interval(sd, f"splits.{sname}")
        samples = sd.get("samples")
        if samples is None and mode == "random":
            raise RecipeError(
                f"splits.{sname}.samples is required with sampling mode 'random', e.g. samples: 1024"
            )
        if samples is not None:
            samples = _int(samples, f"splits.{sname}.samples", 1, "samples: 1024")
        sregion = None
        if sd.get("region") is not None:
            sregion = _region(sd["region"], f"splits.{sname}.region")
        splits.append(Split(sname, start, end, samples, sregion))
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            apart = a.region is not None and b.region is not None and a.region.disjoint(b.region)
            if a.range.overlaps(b.range) and not apart:
                raise RecipeError(
                    f"splits {a.name} [{a.start}, {a.end}) and {b.name} [{b.start}, {b.end}) "
                    "overlap in time, which leaks data between them; make them disjoint (end is "
                    f"exclusive, so {b.name}.start may equal {a.name}.end), or give both a "
                    "splits.<name>.region and make the regions disjoint (a spatial split)"
                )
    if time is not None:
        for sp in splits:
            if not time.contains(sp.range):
                raise RecipeError(
                    f"splits.{sp.name} [{sp.start}, {sp.end}) lies outside time [{time.start}, "
                    f"{time.end}); widen time or move the split"
                )

    n = raw.get("normalisation") or {}
    n = _check_keys(n, _NORM_KEYS, "normalisation")
    scale = n.get("scale", "max")
    if isinstance(scale, bool) or not (
        scale in SCALE_METHODS or (isinstance(scale, (int, float)) and scale > 0)
    ):
        raise RecipeError(
            f"normalisation.scale must be one of {', '.join(SCALE_METHODS)} (computed on train "
            f"HR) or a positive number in kg m-2, got {scale!r}"
        )
    normalisation = Normalisation(scale=float(scale) if not isinstance(scale, str) else scale)

    output = raw.get("output", f"{name}.zarr")
    if isinstance(output, os.PathLike):
        output = os.fspath(output)
    if not isinstance(output, str) or not output.strip():
        raise RecipeError(f"output must be a path such as stores/{name}.zarr, got {output!r}")
    out_path = Path(output).expanduser()
    if not out_path.is_absolute():
        out_path = Path.cwd() / out_path
    out_path = Path(os.path.normpath(out_path))

    return Recipe(
        name=name,
        source=source,
        factor=factor,
        patch=patch,
        splits=tuple(splits),
        output=out_path,
        variable=variable,
        region=region,
        time=time,
        frames=frames,
        sampling=sampling,
        normalisation=normalisation,
        chunks=chunks,
        text=text,
    )
