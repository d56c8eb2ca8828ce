"""CF units and attributes: the canonical column-mass unit kg m-2, safe conversions, history lines.

climdown works in kg m-2 (mass per unit area). A water column given as a depth converts with
the density of liquid water (1000 kg m-3): 1 mm of water = 1 kg m-2, 1 m = 1000 kg m-2. A
length is a depth of water only when the variable says so (:func:`is_water`): boundary-layer
height in m is not 1000 kg m-2 per metre. Anything else (K, Pa, fractions, a length of
something else) is refused with a clear :class:`~climdown.errors.UnitsError`.

Unit strings are case-sensitive, as in UDUNITS (``M`` is not ``m``). The spellings read are

* column mass: ``kg m-2``, ``kg m**-2``, ``kg m^-2``, ``kg/m2``, ``kg/m^2``, ``kg/m**2``,
  ``kg.m-2``, ``kgm-2`` (and the same with ``g`` for grams);
* depth: ``mm``, ``cm``, ``m`` and their spelled-out forms (``millimetres``, ``metres``, ...),
  optionally followed by ``of water`` / ``water equivalent``, which declares water by itself.

Packed data (integers with ``scale_factor``/``add_offset``/``_FillValue``, as a file opened with
``mask_and_scale=False`` gives them) is decoded with xarray's CF decoding before any unit is
read (:func:`decode_packed`); :func:`without_packing` drops the packing attributes that must
never travel to an output.

Outputs are CF-1.8 (:data:`CF_VERSION`): :func:`cf_variable_attrs` names the variables climdown
knows (``standard_name``, ``long_name``) and says that each value is a cell mean
(``cell_methods``), :func:`cf_time_coordinate` gives a time coordinate its ``standard_name``,
``axis`` and a CF-1.8 storage type, and :func:`cf_global_attrs` keeps a Dataset's global
attributes (licence lines included) while updating ``Conventions``, ``title`` and ``history``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

from climdown._version import __version__
from climdown.errors import UnitsError

__all__ = [
    "CANONICAL",
    "WATER_DENSITY",
    "WATER_NAMES",
    "PACKING_KEYS",
    "canonical_units",
    "factor_to_kg_m2",
    "is_length",
    "is_water",
    "decode_packed",
    "without_packing",
    "water_column",
    "to_kg_m2",
    "append_history",
    "CF_VERSION",
    "CELL_METHOD",
    "cf_conventions",
    "cf_global_attrs",
    "cf_variable_attrs",
    "cf_time_coordinate",
]

#: The unit climdown computes in.
CANONICAL = "kg m-2"
#: Density of liquid water in kg m-3, used to turn a water depth into a column mass.
WATER_DENSITY = 1000.0

#: Variable names that say "a column of water" (compared case-insensitively): total column
#: water (vapour), precipitation, precipitable water (ERA5 short names and CMIP names).
WATER_NAMES = ("tcw", "tcwv", "tp", "pr", "prw")
# words in a standard_name / long_name that say the same (after '_' -> ' ', lower case)
_WATER_WORDS = ("total column water", "precipitable water", "precipitation")

#: Attributes (and encoding keys) that describe how values are stored, not what they mean:
#: stale after decoding, and wrong on any output.
PACKING_KEYS = (
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    "valid_range",
    "valid_min",
    "valid_max",
    "_Unsigned",
)
_DECODED_BY_CF = ("scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned")

# canonical spelling -> multiplicative factor to kg m-2
_FACTORS: dict[str, float] = {
    "kg m-2": 1.0,
    "g m-2": 1e-3,
    "mm": WATER_DENSITY / 1000.0,  # 1 mm of water = 1 kg m-2
    "cm": WATER_DENSITY / 100.0,
    "m": WATER_DENSITY,  # 1 m of water = 1000 kg m-2 (ERA5 'tp', 'sf' are in m)
}
_LENGTHS = ("mm", "cm", "m")

# mass per area: kg m-2, kg m**-2, kg m^-2, kg.m-2, kgm-2, kg/m2, kg/m^2, kg/m**2 (and g)
_MASS_PER_AREA = re.compile(
    r"^(?P<mass>kg|g)(?:\s*\.\s*|\s+|)m\s*(?:\*\*|\^)?\s*-\s*2$"
    r"|^(?P<mass2>kg|g)\s*/\s*m\s*(?:\*\*|\^)?\s*2$"
)
_LENGTH_WORDS = {
    "mm": "mm",
    "millimetre": "mm",
    "millimeter": "mm",
    "cm": "cm",
    "centimetre": "cm",
    "centimeter": "cm",
    "m": "m",
    "metre": "m",
    "meter": "m",
}
# a depth, optionally "of water" / "water equivalent" (which declares the variable water)
_DEPTH = re.compile(
    r"^(?P<length>mm|cm|m|(?:milli|centi)?met(?:re|er)s?)"
    r"(?P<water>\s+(?:of\s+)?(?:liquid\s+)?water(?:\s+equivalent)?)?$"
)


def _parse(units: str) -> tuple[str, bool] | None:
    """``(canonical spelling, says water)`` of a units string, or None. Case-sensitive."""
    s = re.sub(r"\s+", " ", units.strip())
    m = _MASS_PER_AREA.match(s)
    if m:
        return f"{m.group('mass') or m.group('mass2')} m-2", False
    m = _DEPTH.match(s)
    if m:
        word = m.group("length")
        word = word[:-1] if word.endswith("s") and len(word) > 2 else word
        return _LENGTH_WORDS[word], m.group("water") is not None
    return None


def canonical_units(units: str | None) -> str:
    """Return the canonical spelling of ``units`` if climdown can convert it to kg m-2.

    This reads the unit only; whether a length is a depth of *water* depends on the variable
    (:func:`is_water`, checked by :func:`to_kg_m2`).

    Parameters
    ----------
    units : str or None
        A units string such as ``"kg m**-2"``, ``"kg m-2"``, ``"kg/m2"``, ``"mm"`` or ``"m"``
        (case-sensitive: ``"M"`` is not metres).

    Returns
    -------
    str
        One of ``"kg m-2"``, ``"g m-2"``, ``"mm"``, ``"cm"``, ``"m"``.

    Raises
    ------
    UnitsError
        If ``units`` is missing or not a column mass / length (e.g. ``"K"``, ``"M"``).
    """
    if units is None or str(units).strip() == "":
        raise UnitsError(
            "the variable has no 'units' attribute; climdown needs a column mass in kg m-2 "
            "(or a water depth in mm or m). Set it, e.g. da.attrs['units'] = 'kg m-2'."
        )
    parsed = _parse(str(units))
    if parsed is None:
        raise UnitsError(
            f"units {units!r} are not a column mass: expected kg m-2 (also spelled 'kg m**-2', "
            "'kg/m2', 'kg/m^2', 'kg m^-2') or a water depth ('mm', 'm'); unit strings are "
            "case-sensitive. Convert the variable first, or pass the right units in its attrs "
            "if they are mislabelled."
        )
    return parsed[0]


def factor_to_kg_m2(units: str | None) -> float:
    """Multiplicative factor that turns values in ``units`` into kg m-2 (see :func:`canonical_units`).

    For a length this is the factor of a depth of liquid water; whether the variable *is*
    water is :func:`to_kg_m2`'s question.
    """
    return _FACTORS[canonical_units(units)]


def is_length(units: str | None) -> bool:
    """Whether ``units`` is a length (``mm``, ``cm``, ``m``, ...), which is a column mass only for water."""
    return canonical_units(units) in _LENGTHS


def is_water(name: Any, attrs: Mapping[str, Any]) -> bool:
    """Whether a variable says it is a column of water (so that a length is a water depth).

    True when its name is one of :data:`WATER_NAMES` (``tcw``, ``tcwv``, ``tp``, ``pr``,
    ``prw``; any case), its ``standard_name`` starts with ``lwe_`` (CF's liquid water
    equivalent), its ``standard_name`` or ``long_name`` names total column water (or water
    vapour), precipitable water or precipitation, or its ``units`` say ``of water``.

    Parameters
    ----------
    name : hashable or None
        The variable's name (``da.name``).
    attrs : mapping
        Its attributes.
    """
    if str(name).strip().lower() in WATER_NAMES:
        return True
    std = str(attrs.get("standard_name") or "").strip().lower()
    if std.startswith("lwe_"):
        return True
    for text in (std, str(attrs.get("long_name") or "")):
        words = re.sub(r"[\s_]+", " ", text.strip().lower())
        if words in WATER_NAMES or any(w in words for w in _WATER_WORDS):
            return True
    units = attrs.get("units")
    parsed = _parse(str(units)) if units is not None else None
    return bool(parsed and parsed[1])


def _check_water(name: Any, attrs: Mapping[str, Any]) -> None:
    units = attrs.get("units")
    if is_length(units) and not is_water(name, attrs):
        raise UnitsError(
            f"variable {name!r} ({attrs.get('long_name') or 'no long_name'}) has units "
            f"{units!r}, a length; climdown reads a length as a depth of liquid water only for "
            "a variable that says it is water (named tcw, tcwv, tp, pr or prw, or with a "
            "standard_name 'lwe_...' or a long_name or standard_name naming total column water, "
            "precipitable water or precipitation). If this is water, declare it, e.g. "
            "da.attrs['standard_name'] = 'lwe_thickness_of_precipitation_amount' or "
            "da.attrs['long_name'] = 'Total column water'; if it is not (e.g. boundary-layer "
            "height), climdown cannot downscale it"
        )


def decode_packed(da: Any) -> Any:
    """``da`` with CF packing decoded: integers with ``scale_factor``/``add_offset`` become floats
    and ``_FillValue``/``missing_value`` become NaN (xarray's CF decoding; lazy on dask).

    A DataArray opened with ``mask_and_scale=False`` carries raw counts and these attributes;
    decoded values are what the counts mean. An integer variable is decoded to float32 (its
    packing resolution is far coarser than float32's), a float one keeps its precision.
    Stale ``valid_range``/``valid_min``/``valid_max`` (in packed units) are dropped. Data
    without packing attributes is returned as it is.
    """
    if not any(k in da.attrs for k in _DECODED_BY_CF):
        return da
    import numpy as np
    import xarray as xr

    attrs = dict(da.attrs)
    if np.issubdtype(da.dtype, np.integer):
        for key in ("scale_factor", "add_offset"):
            if key in attrs:
                attrs[key] = np.float32(attrs[key])
    raw = xr.Variable(da.dims, da.data, attrs)
    decoded = xr.decode_cf(xr.Dataset({"packed": raw}), decode_times=False)["packed"]
    out = xr.DataArray(
        decoded.variable.data if decoded.chunks else decoded.values,
        dims=da.dims,
        coords=da.coords,
        name=da.name,
        attrs=without_packing(decoded.attrs),
    )
    return out


def without_packing(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of attributes or an encoding without :data:`PACKING_KEYS` (and ``dtype``: an output
    is float, whatever the input was stored as)."""
    return {k: v for k, v in mapping.items() if k not in PACKING_KEYS and k != "dtype"}


def water_column(da: Any) -> tuple[Any, float]:
    """``da`` decoded (:func:`decode_packed`) and checked, with the factor that turns it into kg m-2.

    The checks of :func:`to_kg_m2` without the multiplication, for callers that convert
    later (in blocks, in float64) and convert back to the input's units afterwards.

    Returns
    -------
    da : xarray.DataArray
        Decoded, still in its own units.
    factor : float
        Values x ``factor`` are kg m-2.

    Raises
    ------
    UnitsError
        As :func:`to_kg_m2`.
    """
    da = decode_packed(da)
    factor = factor_to_kg_m2(da.attrs.get("units"))
    _check_water(da.name, da.attrs)
    return da, factor


def to_kg_m2(da: Any) -> Any:
    """Return the xarray DataArray ``da`` in kg m-2, converting water depths with rho = 1000 kg m-3.

    Packed data is decoded first (:func:`decode_packed`). A length converts only when the
    variable says it is water (:func:`is_water`). The original units are recorded in
    ``attrs['units_original']`` when a conversion happens (an existing ``units_original`` is
    kept). Lazy (dask) data stays lazy.

    Raises
    ------
    UnitsError
        If the units are missing or not convertible, or a length belongs to a variable that
        does not say it is water (e.g. boundary-layer height in m).
    """
    da, factor = water_column(da)
    units = da.attrs.get("units")
    if factor == 1.0:
        out = da.copy(deep=False)
    else:
        out = da * factor
        out.attrs = dict(da.attrs)
        out.attrs.setdefault("units_original", units)
    out.attrs["units"] = CANONICAL
    out.encoding = {}
    return out


def append_history(attrs: dict[str, Any], message: str) -> dict[str, Any]:
    """Return a copy of ``attrs`` with a timestamped climdown line appended to ``history``."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp}: climdown {__version__}: {message}"
    out = dict(attrs)
    prev = out.get("history")
    out["history"] = f"{prev}\n{line}" if prev else line
    return out


# ---------------------------------------------------------------------------------------
# CF metadata of outputs
# ---------------------------------------------------------------------------------------
#: The CF version every output follows; the test suite checks outputs against it with the
#: IOOS compliance checker (``compliance-checker --test=cf:1.8``).
CF_VERSION = "CF-1.8"

# variable name (lower case) -> (standard_name of a column mass, standard_name of the same as a
# depth of liquid water or None where CF has none, long_name); CF standard-name table entries
_TCW = ("atmosphere_mass_content_of_water", None, "Total column water")
_TCWV = (
    "atmosphere_mass_content_of_water_vapor",
    "lwe_thickness_of_atmosphere_mass_content_of_water_vapor",
    "Total column water vapour",
)
_KNOWN_VARIABLES: dict[str, tuple[str, str | None, str]] = {
    "tcw": _TCW,
    "total_column_water": _TCW,
    "tcwv": _TCWV,
    "total_column_water_vapour": _TCWV,
    "prw": _TCWV,
}
#: What a climdown output value is: the mean over its cell (a conserving constraint makes the
#: area-weighted mean of each block of fine cells equal its coarse cell's value).
CELL_METHOD = "area: mean"
# netCDF types CF-1.8 allows for numbers (int64 and the unsigned types came with CF-1.9)
_CF18_NUMBER_TYPES = ("int8", "int16", "int32", "float32", "float64")


def cf_variable_attrs(name: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a downscaled (or coarsened) variable's attributes with CF's names where known.

    For the variables climdown knows (``tcw``/``total_column_water``: CF
    ``atmosphere_mass_content_of_water``; ``tcwv``/``total_column_water_vapour``/``prw``:
    ``atmosphere_mass_content_of_water_vapor``, or its ``lwe_thickness_of_...`` form when the
    units are a depth of water) a missing ``standard_name`` and ``long_name`` are set; a
    ``standard_name`` is only set where its units fit it (a mass per area, or a length for the
    ``lwe_`` form). Every variable gets :data:`CELL_METHOD` appended to its ``cell_methods``
    unless they already say how its area was reduced. Nothing the input says is replaced.

    Parameters
    ----------
    name : hashable or None
        The variable's name.
    attrs : mapping
        Its attributes (the input's, packing already dropped).
    """
    out = dict(attrs)
    known = _KNOWN_VARIABLES.get(str(name).strip().lower())
    if known is not None:
        mass_name, depth_name, long_name = known
        out.setdefault("long_name", long_name)
        units = out.get("units")
        parsed = _parse(str(units)) if units is not None else None
        if parsed is not None and "standard_name" not in out:
            std = depth_name if parsed[0] in _LENGTHS else mass_name
            if std is not None:
                out["standard_name"] = std
    methods = str(out.get("cell_methods") or "").strip()
    if not re.search(r"\barea\s*:", methods):
        out["cell_methods"] = f"{methods} {CELL_METHOD}".strip()
    return out


def cf_time_coordinate(
    attrs: Mapping[str, Any], encoding: Mapping[str, Any], *, dimension: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """CF attributes and a CF-1.8 encoding of a time coordinate (datetime or cftime values).

    ``standard_name: time`` is set where missing, and ``axis: T`` on a dimension coordinate.
    The encoding keeps the input's ``units``, ``calendar`` and storage type where CF-1.8 allows
    that type; otherwise (none recorded, or int64, which xarray picks for times made in memory
    and CF allows only from 1.9 on) the times are stored as float64, exact for whole numbers of
    the units up to 2**53. No ``_FillValue`` (CF: coordinate variables have no missing values).

    Parameters
    ----------
    attrs, encoding : mapping
        The coordinate's attributes and encoding (packing already dropped).
    dimension : bool
        Whether the coordinate is a dimension coordinate (``time(time)``), not a scalar or
        auxiliary one.

    Returns
    -------
    attrs, encoding : dict
    """
    out = dict(attrs)
    out.setdefault("standard_name", "time")
    if dimension:
        out.setdefault("axis", "T")
    enc = {k: v for k, v in encoding.items() if k in ("units", "calendar", "dtype")}
    dtype = enc.get("dtype")
    if dtype is None or str(getattr(dtype, "name", dtype)) not in _CF18_NUMBER_TYPES:
        enc["dtype"] = "float64"
    enc["_FillValue"] = None
    return out, enc


def cf_conventions(value: Any) -> str:
    """A ``Conventions`` attribute that names :data:`CF_VERSION` (or a later CF version).

    Other conventions in it (``ACDD-1.3``, ...) are kept; a CF version before 1.8 is replaced,
    a later one kept. ``None`` or ``""`` gives ``"CF-1.8"``.
    """
    tokens = [t for t in re.split(r"[,\s]+", str(value or "").strip()) if t]
    others = [t for t in tokens if not t.upper().startswith("CF-")]
    cf = CF_VERSION
    for token in tokens:
        m = re.fullmatch(r"CF-(\d+)\.(\d+)", token, flags=re.IGNORECASE)
        if m and (int(m.group(1)), int(m.group(2))) > (1, 8):
            cf = f"CF-{m.group(1)}.{m.group(2)}"
    return " ".join([cf, *others])


def cf_global_attrs(attrs: Mapping[str, Any], message: str, *, title: str) -> dict[str, Any]:
    """A Dataset's global attributes for an output made from it.

    Everything the input says is kept (licence and source lines, institution, its title, ...),
    except that ``Conventions`` names CF-1.8 (:func:`cf_conventions`), ``title`` is set where
    the input has none (or an empty one), and ``history`` gains a line (:func:`append_history`).

    Parameters
    ----------
    attrs : mapping
        The input's global attributes.
    message : str
        The ``history`` line (a timestamp and climdown's version are prepended).
    title : str
        A title for an input without one (``"Total column water, downscaled 4x by climdown"``).
    """
    out = append_history(dict(attrs), message)
    out["Conventions"] = cf_conventions(out.get("Conventions"))
    if not str(out.get("title") or "").strip():
        out["title"] = title
    return out
