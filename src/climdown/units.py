"""CF units and attributes: the canonical column-mass unit kg m-2, safe conversions, history lines.

climdown works in kg m-2 (mass per unit area). A water column given as a depth converts with
the density of liquid water (1000 kg m-3): 1 mm of water = 1 kg m-2, 1 m = 1000 kg m-2.
Anything else (K, Pa, fractions) is refused with a clear :class:`~climdown.errors.UnitsError`.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from climdown._version import __version__
from climdown.errors import UnitsError

__all__ = [
    "CANONICAL",
    "WATER_DENSITY",
    "canonical_units",
    "factor_to_kg_m2",
    "to_kg_m2",
    "append_history",
]

#: The unit climdown computes in.
CANONICAL = "kg m-2"
#: Density of liquid water in kg m-3, used to turn a water depth into a column mass.
WATER_DENSITY = 1000.0

# normalised spelling -> multiplicative factor to kg m-2
_FACTORS: dict[str, float] = {
    "kg m-2": 1.0,
    "mm": WATER_DENSITY / 1000.0,  # 1 mm of water = 1 kg m-2
    "m": WATER_DENSITY,  # 1 m of water = 1000 kg m-2 (ERA5 'tp', 'sf' are in m)
    "cm": WATER_DENSITY / 100.0,
    "g m-2": 1e-3,
}


def _normalise_spelling(units: str) -> str:
    s = units.strip().lower()
    s = s.replace("**", "").replace("^", "")
    s = re.sub(r"\s+", " ", s)
    s = s.replace("kg/m2", "kg m-2").replace("kg / m2", "kg m-2")
    s = s.replace("g/m2", "g m-2")
    s = s.replace("kg.m-2", "kg m-2").replace("kgm-2", "kg m-2")
    s = s.replace("mm of water", "mm").replace("mm water equivalent", "mm")
    s = s.replace("m of water equivalent", "m").replace("m of water", "m")
    s = s.replace("millimeters", "mm").replace("millimetres", "mm").replace("meters", "m")
    s = s.replace("metres", "m")
    return s


def canonical_units(units: str | None) -> str:
    """Return the normalised spelling of ``units`` if climdown can convert it to kg m-2.

    Parameters
    ----------
    units : str or None
        A units string such as ``"kg m**-2"``, ``"kg m-2"``, ``"mm"`` or ``"m"``.

    Returns
    -------
    str
        One of ``"kg m-2"``, ``"mm"``, ``"cm"``, ``"m"``, ``"g m-2"``.

    Raises
    ------
    UnitsError
        If ``units`` is missing or not a column mass / water depth (e.g. ``"K"``).
    """
    if units is None or str(units).strip() == "":
        raise UnitsError(
            "the variable has no 'units' attribute; climdown needs a column mass in kg m-2 "
            "(or a water depth in mm or m). Set it, e.g. da.attrs['units'] = 'kg m-2'."
        )
    s = _normalise_spelling(str(units))
    if s not in _FACTORS:
        raise UnitsError(
            f"units {units!r} are not a column mass: expected kg m-2 (also spelled 'kg m**-2', "
            "'kg/m2') or a water depth ('mm', 'm'). Convert the variable first, or pass the "
            "right units in its attrs if they are mislabelled."
        )
    return s


def factor_to_kg_m2(units: str | None) -> float:
    """Multiplicative factor that turns values in ``units`` into kg m-2 (see :func:`canonical_units`)."""
    return _FACTORS[canonical_units(units)]


def to_kg_m2(da: Any) -> Any:
    """Return the xarray DataArray ``da`` in kg m-2, converting water depths with rho = 1000 kg m-3.

    The original units are recorded in ``attrs['units_original']`` when a conversion happens.
    Lazy (dask) data stays lazy.

    Raises
    ------
    UnitsError
        If the units are missing or not convertible.
    """
    units = da.attrs.get("units")
    factor = factor_to_kg_m2(units)
    if factor == 1.0:
        out = da.copy(deep=False)
    else:
        out = da * factor
        out.attrs = dict(da.attrs)
        out.attrs["units_original"] = units
    out.attrs["units"] = CANONICAL
    out.encoding = {}
    return out


def append_history(attrs: dict[str, Any], message: str) -> dict[str, Any]:
    """Return a copy of ``attrs`` with a timestamped climdown line appended to ``history``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp}: climdown {__version__}: {message}"
    out = dict(attrs)
    prev = out.get("history")
    out["history"] = f"{prev}\n{line}" if prev else line
    return out
