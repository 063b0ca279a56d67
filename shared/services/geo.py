"""Nearest locations to a point (an extension outside the OCPI namespace, for our own apps).

Every location we hold (our own and those CPO partners pushed or we pulled) is in the sparse geo
index GSI2 under the geohash cell of its coordinates (shared/services/locations.py: precision 4,
cells of 0.35° x 0.18°). A query reads the cells that can hold a point within the radius (the
centre cell and the neighbours the circle reaches, more rings for larger radii: at most
MAX_CELLS Queries, never a Scan), keeps the locations whose haversine distance is within the
radius, sorts them by distance and loads the EVSEs of the ones returned in one batch
(`load_children_many`).
"""

from __future__ import annotations

import math
from typing import Any

from shared import geo
from shared.errors import InvalidParameters
from shared.services import locations

MAX_CELLS = 25
MAX_LIMIT = 100
DEFAULT_LIMIT = 50


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool):
        raise InvalidParameters(f"Invalid {name}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidParameters(f"Invalid {name}: a number is required") from err
    if not math.isfinite(number) or not lo <= number <= hi:
        raise InvalidParameters(f"Invalid {name}: must be between {lo:g} and {hi:g}")
    return number


def _coordinates(body: dict[str, Any]) -> tuple[float, float] | None:
    coords = body.get("coordinates")
    if not isinstance(coords, dict):
        return None
    try:
        return float(coords["latitude"]), float(coords["longitude"])
    except (KeyError, TypeError, ValueError):
        return None


def cells_for(lat: float, lon: float, radius_km: float) -> list[str]:
    """The geohash cells a query reads; InvalidParameters when the radius needs more than MAX_CELLS
    (decided on the worst case for the latitude, so it does not depend on where in its cell the
    point lies)."""
    radius_m = radius_km * 1000
    worst = geo.covering_cells_max(lat, radius_m, locations.GEO_PRECISION)
    if worst > MAX_CELLS:
        raise InvalidParameters(
            f"Invalid radius_km: {radius_km:g} km is too large at this latitude (up to {MAX_CELLS} "
            f"index cells are read, {worst} would be needed)"
        )
    return geo.covering_cells(lat, lon, radius_m, locations.GEO_PRECISION)


def nearby(
    store: Any, lat: Any, lon: Any, radius_km: Any, limit: Any = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Locations within ``radius_km`` of (lat, lon), nearest first (ties by key), at most ``limit``:
    ``[{"distance_m": int, "location": <Location with its EVSEs>}]``. Bad input -> 2001."""
    lat = _number(lat, "latitude", -90, 90)
    lon = _number(lon, "longitude", -180, 180)
    radius_km = _number(radius_km, "radius_km", 0, 1000)
    if radius_km <= 0:
        raise InvalidParameters("Invalid radius_km: must be greater than 0")
    if isinstance(limit, bool):
        raise InvalidParameters("Invalid limit")
    try:
        limit = int(str(limit))
    except (TypeError, ValueError) as err:
        raise InvalidParameters("Invalid limit: an integer is required") from err
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameters(f"Invalid limit: must be between 1 and {MAX_LIMIT}")

    radius_m = radius_km * 1000
    found: dict[Any, tuple[float, Any]] = {}
    for cell in cells_for(lat, lon, radius_km):
        for obj in store.query_index(locations.GEO_INDEX, locations.geo_cell_pk(cell)):
            point = _coordinates(obj.body)
            if point is None:
                continue
            distance = geo.haversine_m(lat, lon, *point)
            if distance <= radius_m:
                found[obj.ref] = (distance, obj)
    ranked = sorted(found.values(), key=lambda pair: (pair[0], pair[1].ref.owner, pair[1].ref.object_id))
    ranked = ranked[:limit]
    loaded = store.load_children_many([obj for _, obj in ranked])
    return [
        {"distance_m": round(distance), "location": locations.assemble(obj)}
        for (distance, _), obj in zip(ranked, loaded, strict=True)
    ]
