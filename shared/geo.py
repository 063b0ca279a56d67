"""Geohash cells and great-circle distances (pure: standard library only).

Geohash (the public-domain scheme of G. Niemeyer): a cell of ``precision`` base-32 characters holds
``5 * precision`` bits, longitude and latitude bits interleaved, longitude first. Each axis is
bisected: the k-th bit of an axis says whether the value lies in the upper half of the interval
left by the previous bits. At a given precision the cells are a regular grid, so a cell is also a
pair of integer indices ``(lat_index, lon_index)``; neighbours and the cells covering a circle are
computed on those indices (longitude wraps around, latitude stops at the poles).

Cell size per precision (width at the equator x height): 4 -> 39.1 km x 19.5 km, 5 -> 4.9 km x
4.9 km, 6 -> 1.2 km x 0.6 km. The width shrinks with cos(latitude).

Distances: haversine on a sphere of the mean Earth radius (IUGG, 6 371 008.8 m); the error against
the WGS 84 ellipsoid is below 0.5 %.
"""

from __future__ import annotations

import math

__all__ = [
    "BASE32",
    "EARTH_RADIUS_M",
    "bounds",
    "cell_size_m",
    "covering_cells",
    "covering_cells_max",
    "decode",
    "encode",
    "haversine_m",
    "neighbour",
    "neighbours",
]

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_DECODE = {c: i for i, c in enumerate(BASE32)}
EARTH_RADIUS_M = 6_371_008.8
MAX_PRECISION = 12
# Bounding boxes are widened by this many degrees (~0.1 mm) against rounding at cell borders.
_SLACK = 1e-9

# Neighbour directions as (lat step, lon step).
DIRECTIONS: dict[str, tuple[int, int]] = {
    "n": (1, 0),
    "ne": (1, 1),
    "e": (0, 1),
    "se": (-1, 1),
    "s": (-1, 0),
    "sw": (-1, -1),
    "w": (0, -1),
    "nw": (1, -1),
}


# ------------------------------------------------------------------ bits and indices
def _bits(precision: int) -> tuple[int, int]:
    """(latitude bits, longitude bits) of a geohash of this length."""
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"geohash precision must be 1..{MAX_PRECISION}")
    total = 5 * precision
    return total // 2, total - total // 2


def _check(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("latitude and longitude must be finite numbers")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError("latitude must be in [-90, 90] and longitude in [-180, 180]")


def _axis_index(value: float, lo: float, hi: float, bits: int) -> int:
    """Index of the cell holding ``value`` after ``bits`` bisections of [lo, hi] (by comparison
    with exact binary midpoints, as geohash defines it: no rounding at cell borders)."""
    index = 0
    for _ in range(bits):
        mid = (lo + hi) / 2
        index <<= 1
        if value >= mid:
            index |= 1
            lo = mid
        else:
            hi = mid
    return index


def _indices(lat: float, lon: float, precision: int) -> tuple[int, int]:
    lat_bits, lon_bits = _bits(precision)
    return _axis_index(lat, -90.0, 90.0, lat_bits), _axis_index(lon, -180.0, 180.0, lon_bits)


def _from_indices(lat_index: int, lon_index: int, precision: int) -> str:
    lat_bits, lon_bits = _bits(precision)
    chars: list[str] = []
    value = 0
    lat_left, lon_left = lat_bits, lon_bits
    for i in range(5 * precision):
        if i % 2 == 0:  # even bits are longitude bits
            lon_left -= 1
            bit = (lon_index >> lon_left) & 1
        else:
            lat_left -= 1
            bit = (lat_index >> lat_left) & 1
        value = (value << 1) | bit
        if i % 5 == 4:
            chars.append(BASE32[value])
            value = 0
    return "".join(chars)


def _to_indices(geohash: str) -> tuple[int, int, int]:
    """(lat_index, lon_index, precision) of a geohash."""
    if not geohash or len(geohash) > MAX_PRECISION:
        raise ValueError("invalid geohash")
    lat_index = lon_index = 0
    i = 0
    for char in geohash.lower():
        value = _DECODE.get(char)
        if value is None:
            raise ValueError("invalid geohash")
        for shift in range(4, -1, -1):
            bit = (value >> shift) & 1
            if i % 2 == 0:
                lon_index = (lon_index << 1) | bit
            else:
                lat_index = (lat_index << 1) | bit
            i += 1
    return lat_index, lon_index, len(geohash)


# ------------------------------------------------------------------ public API
def encode(lat: float, lon: float, precision: int = 9) -> str:
    """The geohash of a point, ``precision`` characters long."""
    lat, lon = float(lat), float(lon)
    _check(lat, lon)
    return _from_indices(*_indices(lat, lon, precision), precision)


def bounds(geohash: str) -> tuple[float, float, float, float]:
    """(lat_min, lat_max, lon_min, lon_max) of a cell."""
    lat_index, lon_index, precision = _to_indices(geohash)
    lat_bits, lon_bits = _bits(precision)
    height = 180.0 / (1 << lat_bits)
    width = 360.0 / (1 << lon_bits)
    lat_min = -90.0 + lat_index * height
    lon_min = -180.0 + lon_index * width
    return lat_min, lat_min + height, lon_min, lon_min + width


def decode(geohash: str) -> tuple[float, float]:
    """The centre (lat, lon) of a cell."""
    lat_min, lat_max, lon_min, lon_max = bounds(geohash)
    return (lat_min + lat_max) / 2, (lon_min + lon_max) / 2


def neighbour(geohash: str, direction: str) -> str | None:
    """The adjacent cell in a direction (n, ne, e, se, s, sw, w, nw); None beyond a pole.
    Longitude wraps around the antimeridian."""
    d_lat, d_lon = DIRECTIONS[direction]
    lat_index, lon_index, precision = _to_indices(geohash)
    lat_bits, lon_bits = _bits(precision)
    lat_index += d_lat
    if not 0 <= lat_index < (1 << lat_bits):
        return None
    return _from_indices(lat_index, (lon_index + d_lon) % (1 << lon_bits), precision)


def neighbours(geohash: str) -> dict[str, str]:
    """The (up to) eight adjacent cells by direction; cells beyond a pole are left out."""
    out: dict[str, str] = {}
    for direction in DIRECTIONS:
        cell = neighbour(geohash, direction)
        if cell is not None:
            out[direction] = cell
    return out


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def cell_size_m(precision: int, lat: float = 0.0) -> tuple[float, float]:
    """(width, height) in metres of a cell at a latitude."""
    lat_bits, lon_bits = _bits(precision)
    metres_per_degree = math.pi * EARTH_RADIUS_M / 180
    height = 180.0 / (1 << lat_bits) * metres_per_degree
    width = 360.0 / (1 << lon_bits) * metres_per_degree * math.cos(math.radians(lat))
    return width, height


def _angular_box(lat: float, radius_m: float) -> tuple[float, float | None]:
    """Half extents (degrees) of the smallest latitude/longitude box holding every point within
    ``radius_m`` of a point at ``lat`` (J. Matuschek, "Finding Points Within a Distance of a
    Latitude/Longitude Using Bounding Coordinates"). The longitude half extent is None when the
    circle reaches a pole (every longitude is in)."""
    angle = radius_m / EARTH_RADIUS_M
    d_lat = math.degrees(angle) + _SLACK
    if abs(lat) + d_lat >= 90.0 or angle >= math.pi / 2:
        return d_lat, None
    ratio = math.sin(angle) / math.cos(math.radians(lat))
    if ratio >= 1.0:
        return d_lat, None
    return d_lat, math.degrees(math.asin(ratio)) + _SLACK


def covering_cells_max(lat: float, radius_m: float, precision: int) -> int:
    """The most cells :func:`covering_cells` can return for this radius at this latitude, wherever
    the centre lies within its cell (so a limit on it does not depend on the exact position)."""
    lat_bits, lon_bits = _bits(precision)
    d_lat, d_lon = _angular_box(lat, radius_m)
    rows = min(math.ceil(2 * d_lat / (180.0 / (1 << lat_bits))) + 1, 1 << lat_bits)
    if d_lon is None:
        return rows * (1 << lon_bits)
    cols = min(math.ceil(2 * d_lon / (360.0 / (1 << lon_bits))) + 1, 1 << lon_bits)
    return rows * cols


def covering_cells(lat: float, lon: float, radius_m: float, precision: int) -> list[str]:
    """Every cell that can hold a point within ``radius_m`` of (lat, lon): the cells of the
    circle's bounding box (the centre cell first, then row by row). For a radius smaller than the
    cell these are the centre cell and the neighbours the circle reaches; larger radii add rings."""
    lat, lon = float(lat), float(lon)
    _check(lat, lon)
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise ValueError("radius must be a non-negative number")
    lat_bits, lon_bits = _bits(precision)
    rows_total, cols_total = 1 << lat_bits, 1 << lon_bits
    d_lat, d_lon = _angular_box(lat, radius_m)
    lat_lo = _axis_index(max(-90.0, lat - d_lat), -90.0, 90.0, lat_bits)
    lat_hi = _axis_index(min(90.0, lat + d_lat), -90.0, 90.0, lat_bits)
    lat_hi = min(lat_hi, rows_total - 1)
    if d_lon is None or 2 * d_lon >= 360.0:
        columns = list(range(cols_total))
    else:
        # Indices may run past either end of the map: they wrap around the antimeridian.
        lon_lo = math.floor((lon - d_lon + 180.0) / 360.0 * cols_total)
        lon_hi = math.floor((lon + d_lon + 180.0) / 360.0 * cols_total)
        centre_col = _axis_index(lon, -180.0, 180.0, lon_bits)
        lon_lo, lon_hi = min(lon_lo, centre_col), max(lon_hi, centre_col)
        columns = list(dict.fromkeys(c % cols_total for c in range(lon_lo, lon_hi + 1)))
    centre = _from_indices(*_indices(lat, lon, precision), precision)
    cells = [centre]
    seen = {centre}
    for row in range(lat_lo, lat_hi + 1):
        for col in columns:
            cell = _from_indices(row, col, precision)
            if cell not in seen:
                seen.add(cell)
                cells.append(cell)
    return cells
