"""Training-set recipes: frozen dataclasses loaded from YAML and validated before any work.

A recipe says where the data come from (``source``, ``variable``, ``region``, ``time``), how
patches are cut (``factor``, ``patch``, ``frames``, ``sampling``), how they are split by time
(``splits``), how they are normalised and chunked, and where the store goes (``output``).
Every dataclass checks itself when it is made, so a :class:`Recipe` built in Python is as
valid as one read from YAML; each section's ``from_mapping`` reads its YAML mapping (unknown
keys refused) and :func:`load_recipe` is :func:`yaml.safe_load` + :meth:`Recipe.from_mapping`.
A bad key or value raises :class:`~climdown.errors.RecipeError` naming the key and the fix.
:func:`climdown.data.store.build_store` turns a recipe into a zarr store. ``docs/data.md``
lists every key with its meaning and default.

Splits are half-open time intervals ``[start, end)``: a split ending at ``2020-01-03`` and the
next one starting there share no time step, and a sequence of ``frames`` steps is only drawn
when all of its steps lie inside one split, so nothing leaks between splits.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from climdown.errors import RecipeError
from climdown.grid import Box
from climdown.validate import check_keys, integer, number

__all__ = [
    "STORE_FORMAT",
    "CURVILINEAR_STORE_FORMAT",
    "SPLIT_NAMES",
    "SCALE_METHODS",
    "SAMPLING_MODES",
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
#: Version of the layout of a store cut from a curvilinear source (rotated pole, map
#: projection): patches are index windows of one domain, whose 2-D centres, corners and cell
#: areas each split holds once (``docs/data.md``). A separate number, so regular stores keep
#: theirs (and their recipe hashes), and a climdown that reads only ``STORE_FORMAT`` refuses
#: such a store instead of misreading it.
CURVILINEAR_STORE_FORMAT = 2
#: Split names a recipe may use, in store order.
SPLIT_NAMES = ("train", "val", "test")
#: Named scales for the scale-only normalisation (``x / scale``), computed on train HR.
SCALE_METHODS = ("max", "std", "mean")
#: How patch positions and start times are chosen (see :class:`Sampling`).
SAMPLING_MODES = ("random", "stride")

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
#: A plain name: word characters, dots, dashes and inner spaces, starting with a word character
#: (no path separators, no ``..``, no ``~``), so ``<name>.zarr`` stays in the output folder.
_PLAIN_NAME = re.compile(r"\w(?:[\w. -]*[\w.-])?")
_REGION_KEYS = ("lat_min", "lat_max", "lon_min", "lon_max")
_TIME_KEYS = ("start", "end")
_SPLIT_KEYS = ("start", "end", "samples", "region")
_SAMPLING_KEYS = ("mode", "seed", "stride", "time_stride")
_NORM_KEYS = ("scale",)


# ---------------------------------------------------------------------------------------
# dataclasses, each validating itself
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region(Box):
    """A recipe's latitude/longitude box in degrees (a :class:`climdown.grid.Box`).

    Beyond the box's own rules, a recipe asks ``-90 <= lat_min < lat_max <= 90`` and
    ``lon_min < lon_max`` within -180..360, at most 360 degrees apart: a box across the date
    line is written ``lon_min: 170, lon_max: 200``. ``where`` names the section in messages
    (``"region"``, ``"splits.val.region"``); it is not stored.
    """

    where: InitVar[str] = "region"

    def __post_init__(self, where: str) -> None:
        for key in _REGION_KEYS:
            value = number(
                getattr(self, key), f"{where}.{key}", error=RecipeError, what="a number in degrees"
            )
            object.__setattr__(self, key, value)
        if not -90.0 <= self.lat_min < self.lat_max <= 90.0:
            raise RecipeError(
                f"{where} latitudes must satisfy -90 <= lat_min < lat_max <= 90, got "
                f"lat_min={self.lat_min}, lat_max={self.lat_max}"
            )
        if not (-180.0 <= self.lon_min < self.lon_max <= 360.0) or (
            self.lon_max - self.lon_min > 360.0
        ):
            raise RecipeError(
                f"{where} longitudes must satisfy lon_min < lon_max within -180..360 and span at "
                f"most 360 degrees, got lon_min={self.lon_min}, lon_max={self.lon_max}; "
                "for a box across the date line write e.g. lon_min: 170, lon_max: 200"
            )
        super().__post_init__()

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "region") -> Region:
        """The region of a YAML mapping ``{lat_min, lat_max, lon_min, lon_max}``."""
        r = check_keys(raw, _REGION_KEYS, where, error=RecipeError)
        missing = [k for k in _REGION_KEYS if k not in r]
        if missing:
            raise RecipeError(f"{where} needs {', '.join(missing)} (degrees); or leave it out")
        return cls(r["lat_min"], r["lat_max"], r["lon_min"], r["lon_max"], where=where)


@dataclass(frozen=True)
class TimeRange:
    """A half-open time interval ``[start, end)`` (tz-naive, UTC; dates or strings are read).

    ``where`` names the section in messages (``"time"``, ``"splits.train"``); it is not stored.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    where: InitVar[str] = "time"

    def __post_init__(self, where: str) -> None:
        start, end = _time(self.start, f"{where}.start"), _time(self.end, f"{where}.end")
        if not start < end:
            raise RecipeError(
                f"{where}: start {start} must be before end {end} (intervals are [start, end))"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "time") -> TimeRange:
        """The interval of a YAML mapping ``{start, end}``."""
        t = check_keys(raw, _TIME_KEYS, where, error=RecipeError)
        _need_interval(t, where)
        return cls(t["start"], t["end"], where=where)

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

    def __post_init__(self) -> None:
        if self.name not in SPLIT_NAMES:
            raise RecipeError(
                f"split name must be one of {', '.join(SPLIT_NAMES)}, got {self.name!r}"
            )
        where = f"splits.{self.name}"
        interval = TimeRange(self.start, self.end, where=where)
        object.__setattr__(self, "start", interval.start)
        object.__setattr__(self, "end", interval.end)
        if self.samples is not None:
            samples = integer(
                self.samples,
                f"{where}.samples",
                minimum=1,
                error=RecipeError,
                example="samples: 1024",
            )
            object.__setattr__(self, "samples", samples)
        _check_section(self.region, Region, f"{where}.region")

    @classmethod
    def from_mapping(cls, name: str, raw: Any) -> Split:
        """Split ``name`` from its YAML mapping ``{start, end, samples, region}``."""
        where = f"splits.{name}"
        sd = check_keys(raw, _SPLIT_KEYS, where, error=RecipeError)
        _need_interval(sd, where)
        region = sd.get("region")
        if region is not None:
            region = Region.from_mapping(region, f"{where}.region")
        return cls(name, sd["start"], sd["end"], sd.get("samples"), region)

    @property
    def range(self) -> TimeRange:
        """The split's :class:`TimeRange`."""
        return TimeRange(self.start, self.end)


@dataclass(frozen=True)
class Sampling:
    """How patch positions and start times are chosen.

    ``mode="random"`` draws ``samples`` distinct (time, row, column) positions with ``seed``;
    ``mode="stride"`` takes every position on a lattice of ``stride`` cells and
    ``time_stride`` time steps (a seeded subset of ``samples`` of them when given). In a
    :class:`Recipe`, a stride left ``None`` becomes ``patch`` and ``time_stride`` ``frames``.
    """

    mode: str = "random"
    seed: int = 0
    stride: int | None = None
    time_stride: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING_MODES:
            raise RecipeError(f"sampling.mode must be 'random' or 'stride', got {self.mode!r}")
        seed = integer(self.seed, "sampling.seed", minimum=0, error=RecipeError, example="seed: 0")
        object.__setattr__(self, "seed", seed)
        if self.mode == "random" and (self.stride is not None or self.time_stride is not None):
            raise RecipeError(
                "sampling.stride and sampling.time_stride only apply to mode: stride; remove "
                "them or set mode: stride"
            )
        for key, example in (("stride", "stride: 64"), ("time_stride", "time_stride: 1")):
            value = getattr(self, key)
            if value is not None:
                value = integer(
                    value, f"sampling.{key}", minimum=1, error=RecipeError, example=example
                )
                object.__setattr__(self, key, value)

    @classmethod
    def from_mapping(cls, raw: Any) -> Sampling:
        """Sampling from its YAML mapping ``{mode, seed, stride, time_stride}`` (all optional)."""
        return cls(**check_keys(raw, _SAMPLING_KEYS, "sampling", error=RecipeError))


@dataclass(frozen=True)
class Normalisation:
    """Scale-only normalisation: models see ``x / scale``; ``scale`` is named or a number."""

    scale: str | float = "max"

    def __post_init__(self) -> None:
        scale = self.scale
        named = isinstance(scale, str) and scale in SCALE_METHODS
        value = (
            not isinstance(scale, bool)
            and isinstance(scale, numbers.Real)
            and math.isfinite(scale)
            and scale > 0
        )
        if not (named or value):
            raise RecipeError(
                f"normalisation.scale must be one of {', '.join(SCALE_METHODS)} (computed on "
                f"train HR) or a positive number in kg m-2, got {scale!r}"
            )
        if value:
            object.__setattr__(self, "scale", float(scale))

    @classmethod
    def from_mapping(cls, raw: Any) -> Normalisation:
        """Normalisation from its YAML mapping ``{scale}`` (optional)."""
        return cls(**check_keys(raw, _NORM_KEYS, "normalisation", error=RecipeError))


@dataclass(frozen=True)
class Recipe:
    """A validated training-set recipe (see :func:`load_recipe` and ``docs/data.md``).

    Made directly, it checks every field and the rules between them (patch divisible by
    factor, a ``train`` split, splits disjoint and inside ``time``, ...); ``source`` paths and
    ``output`` are made absolute against the current directory, splits are put in store order
    and a stride left ``None`` is filled in.

    Raises
    ------
    RecipeError
        Naming the key and the fix.
    """

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

    def __post_init__(self) -> None:
        def put(key: str, value: Any) -> None:
            object.__setattr__(self, key, value)

        if not isinstance(self.name, str) or not _PLAIN_NAME.fullmatch(self.name):
            raise RecipeError(
                "name must be a non-empty string and a plain name (letters, digits, '_', '.', "
                f"'-' and inner spaces, starting with a letter or digit; no path), got "
                f"{self.name!r}: it names the store and its default output <name>.zarr; put "
                "folders in output: instead"
            )
        put("source", _source(self.source))
        if not isinstance(self.variable, str) or not self.variable:
            raise RecipeError(
                f"variable must be a variable name such as 'tcw', got {self.variable!r}"
            )
        factor = integer(self.factor, "factor", minimum=2, error=RecipeError, example="factor: 4")
        patch = integer(self.patch, "patch", minimum=2, error=RecipeError, example="patch: 128")
        if patch % factor:
            lo, hi = patch - patch % factor, patch - patch % factor + factor
            raise RecipeError(
                f"patch {patch} is not divisible by factor {factor}: the LR patch would not be "
                f"whole coarse cells; use patch: {lo} or patch: {hi}"
            )
        frames = integer(self.frames, "frames", minimum=1, error=RecipeError, example="frames: 3")
        chunks = integer(self.chunks, "chunks", minimum=1, error=RecipeError, example="chunks: 64")
        put("factor", factor)
        put("patch", patch)
        put("frames", frames)
        put("chunks", chunks)
        _check_section(self.region, Region, "region")
        _check_section(self.time, TimeRange, "time")
        _check_section(self.sampling, Sampling, "sampling", optional=False)
        _check_section(self.normalisation, Normalisation, "normalisation", optional=False)
        put("sampling", _resolve_sampling(self.sampling, patch, factor, frames))
        put("splits", _check_splits(self.splits, self.sampling, self.time))
        put("output", _output(self.output, self.name))

    @classmethod
    def from_mapping(
        cls, raw: Any, *, text: str | None = None, default_name: str = "recipe"
    ) -> Recipe:
        """The recipe of a parsed YAML mapping, every section read with its ``from_mapping``.

        Parameters
        ----------
        raw : mapping
            Top-level keys as in ``docs/data.md``; unknown keys are refused.
        text : str, optional
            The YAML text it came from (kept in the store); by default ``raw`` dumped as YAML.
        default_name : str
            ``name`` when the mapping has none (:func:`load_recipe` passes the file name).

        Raises
        ------
        RecipeError
            For an unknown or missing key or a bad value.
        """
        raw = check_keys(raw, _TOP_KEYS, "recipe", error=RecipeError)
        for key in ("source", "factor", "patch", "splits"):
            if key not in raw:
                raise RecipeError(f"recipe is missing the required key '{key}': {_TOP_KEYS[key]}")
        splits = check_keys(raw["splits"], SPLIT_NAMES, "splits", error=RecipeError)
        name = raw.get("name", default_name)
        return cls(
            name=name,
            source=raw["source"],
            factor=raw["factor"],
            patch=raw["patch"],
            splits=tuple(Split.from_mapping(n, splits[n]) for n in SPLIT_NAMES if n in splits),
            output=raw.get("output", f"{name}.zarr"),
            variable=raw.get("variable", "tcw"),
            region=None if raw.get("region") is None else Region.from_mapping(raw["region"]),
            time=None if raw.get("time") is None else TimeRange.from_mapping(raw["time"]),
            frames=raw.get("frames", 1),
            sampling=Sampling.from_mapping(raw.get("sampling") or {}),
            normalisation=Normalisation.from_mapping(raw.get("normalisation") or {}),
            chunks=raw.get("chunks", 64),
            text=yaml.safe_dump(_plain(raw), sort_keys=False) if text is None else text,
        )

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
# loading
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
        against the current directory (:meth:`Recipe.from_mapping`).

    Raises
    ------
    RecipeError
        For a missing file, an unknown or missing key, or a bad value; the message names the
        key and the fix. Nothing is opened or written before this check passes.
    """
    if isinstance(recipe, Mapping):
        return Recipe.from_mapping(recipe)
    path = Path(recipe)
    if not path.is_file():
        raise RecipeError(
            f"recipe file {str(path)!r} not found (current directory {os.getcwd()!r}); "
            "pass the path of a YAML recipe (climdown build also takes a packaged recipe's "
            "name, e.g. climdown build tcw4)"
        )
    text = path.read_text()
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise RecipeError(
            f"recipe {str(path)!r} must be a YAML mapping of keys (source:, factor:, ...), "
            f"got {type(raw).__name__}"
        )
    return Recipe.from_mapping(raw, text=text, default_name=path.stem)


class _UniqueKeyLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that refuses a key given twice in one mapping.

    ``yaml.safe_load`` keeps the last of two equal keys without a word, so a recipe with
    ``factor: 4`` and, further down, ``factor: 2`` would build a 2x store.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:  # the keys written here; merged ones (<<) may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"key {key!r} is given twice (lines {first.start_mark.line + 1} and "
                    f"{key_node.start_mark.line + 1}); give each key once",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# ---------------------------------------------------------------------------------------
# the checks only recipes need (the shared ones are in climdown.validate)
# ---------------------------------------------------------------------------------------
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


def _check_section(value: Any, kind: type, key: str, *, optional: bool = True) -> None:
    """A section given to a dataclass directly must be that section's dataclass."""
    if (value is None and optional) or isinstance(value, kind):
        return
    none = " or None" if optional else ""
    raise RecipeError(
        f"{key} must be a {kind.__name__}{none}, got {value!r}; build it with "
        f"{kind.__name__}(...) or read the YAML mapping with {kind.__name__}.from_mapping"
    )


def _need_interval(d: Mapping[str, Any], where: str) -> None:
    for k in _TIME_KEYS:
        if k not in d:
            raise RecipeError(f"{where} needs '{k}' (a date or time, e.g. 2020-01-01)")


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
    path = _expand(value, "source")
    if not path.exists():
        raise RecipeError(
            f"source {value!r} is not 'synthetic', 'sample:NAME' or a URL, and no such file or "
            f"directory exists (relative paths are read from {os.getcwd()!r}); fix the path or "
            "use source: synthetic"
        )
    return str(path.resolve())


def _output(value: Any, name: str) -> Path:
    """The store path, absolute against the current directory."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"output must be a path such as stores/{name}.zarr, got {value!r}")
    path = _expand(value, "output")
    if not path.is_absolute():
        path = Path.cwd() / path
    return Path(os.path.normpath(path))


def _expand(value: str, key: str) -> Path:
    """``value`` as a path with ``~`` and ``~user`` expanded."""
    try:
        return Path(value).expanduser()
    except RuntimeError as exc:  # pathlib: "Could not determine home directory"
        raise RecipeError(
            f"{key} {value!r}: cannot expand '~' ({exc}); write the full path"
        ) from exc


def _resolve_sampling(s: Sampling, patch: int, factor: int, frames: int) -> Sampling:
    """Fill a stride left ``None`` (``patch``, ``frames``) and check it against ``factor``."""
    if s.mode != "stride":
        return s
    stride = patch if s.stride is None else s.stride
    if stride % factor:
        raise RecipeError(
            f"sampling.stride {stride} is not a multiple of factor {factor}: patches must sit "
            f"on the coarse grid; use stride: {max(factor, stride - stride % factor)}"
        )
    time_stride = frames if s.time_stride is None else s.time_stride
    return replace(s, stride=stride, time_stride=time_stride)


def _check_splits(splits: Any, sampling: Sampling, time: TimeRange | None) -> tuple[Split, ...]:
    """The splits in store order, after the rules between them (train, samples, no leaks)."""
    if isinstance(splits, (str, Mapping)) or not hasattr(splits, "__iter__"):
        raise RecipeError(
            f"splits must be a sequence of Split, got {splits!r}; read the YAML mapping "
            "{train: {start, end, samples}, val: ...} with Recipe.from_mapping"
        )
    splits = tuple(splits)
    for s in splits:
        _check_section(s, Split, "each split", optional=False)
    names = [s.name for s in splits]
    if len(set(names)) != len(names):
        raise RecipeError(f"split names must be unique, got {names}")
    if "train" not in names:
        raise RecipeError("splits needs a 'train' split: {train: {start, end, samples}, val: ...}")
    splits = tuple(sorted(splits, key=lambda s: SPLIT_NAMES.index(s.name)))
    for s in splits:
        if s.samples is None and sampling.mode == "random":
            raise RecipeError(
                f"splits.{s.name}.samples is required with sampling mode 'random', e.g. "
                "samples: 1024"
            )
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            apart = a.region is not None and b.region is not None and a.region.disjoint(b.region)
            if a.range.overlaps(b.range) and not apart:
                raise RecipeError(
                    f"splits {a.name} [{a.start}, {a.end}) and {b.name} [{b.start}, {b.end}) "
                    "overlap in time, which leaks data between them; make them disjoint (end "
                    f"is exclusive, so {b.name}.start may equal {a.name}.end), or give both a "
                    "splits.<name>.region and make the regions disjoint (a spatial split)"
                )
    if time is not None:
        for s in splits:
            if not time.contains(s.range):
                raise RecipeError(
                    f"splits.{s.name} [{s.start}, {s.end}) lies outside time [{time.start}, "
                    f"{time.end}); widen time or move the split"
                )
    return splits
