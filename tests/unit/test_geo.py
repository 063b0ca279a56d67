"""shared/geo.py: geohash encoding, cells, neighbours, haversine and the cells covering a circle."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import geo


@pytest.mark.parametrize(
    ("lat", "lon", "precision", "expected"),
    [
        (57.64911, 10.40744, 11, "u4pruydqqvj"),  # the classic example of geohash.org
        (42.6, -5.6, 5, "ezs42"),  # Wikipedia's example
        (0.0, 0.0, 4, "s000"),
        (-90.0, -180.0, 4, "0000"),
        (90.0, 180.0, 4, "zzzz"),
    ],
)
def test_encode_known_values(lat: float, lon: float, precision: int, expected: str) -> None:
    assert geo.encode(lat, lon, precision) == expected


def test_decode_and_bounds() -> None:
    lat, lon = geo.decode("u4pruydqqvj")
    assert abs(lat - 57.64911) < 1e-5 and abs(lon - 10.40744) < 1e-5
    lat_min, lat_max, lon_min, lon_max = geo.bounds("ezs42")
    assert lat_min <= 42.6 < lat_max and lon_min <= -5.6 < lon_max
    assert math.isclose(lat_max - lat_min, 180 / 2**12) and math.isclose(lon_max - lon_min, 360 / 2**13)
    # Precision 4: 10 bits per axis.
    lat_min, lat_max, lon_min, lon_max = geo.bounds("u173")
    assert math.isclose(lat_max - lat_min, 180 / 1024) and math.isclose(lon_max - lon_min, 360 / 1024)
    assert geo.bounds("U173") == geo.bounds("u173")


@pytest.mark.parametrize("bad", ["", "u4a", "abc!", "u" * 13])
def test_invalid_geohash(bad: str) -> None:
    with pytest.raises(ValueError):
        geo.bounds(bad)


@pytest.mark.parametrize(
    ("lat", "lon"), [(91, 0), (-90.5, 0), (0, 180.1), (0, -181), (float("nan"), 0), (0, float("inf"))]
)
def test_encode_refuses_points_off_the_map(lat: float, lon: float) -> None:
    with pytest.raises(ValueError):
        geo.encode(lat, lon, 4)


def test_neighbours_known_values() -> None:
    # ngeohash's documented example, in the order n, ne, e, se, s, sw, w, nw.
    assert list(geo.neighbours("dqcjq").values()) == [
        "dqcjw",
        "dqcjx",
        "dqcjr",
        "dqcjp",
        "dqcjn",
        "dqcjj",
        "dqcjm",
        "dqcjt",
    ]
    assert list(geo.neighbours("dqcjq")) == ["n", "ne", "e", "se", "s", "sw", "w", "nw"]


def test_neighbours_wrap_at_the_antimeridian_and_stop_at_the_poles() -> None:
    top_right = geo.neighbours("zzzz")
    assert set(top_right) == {"e", "se", "s", "sw", "w"}  # nothing north of the north pole
    assert top_right["e"] == "bpbp"  # east of +180 is -180, same (top) row
    assert geo.neighbour("bpbp", "w") == "zzzz"
    assert geo.neighbour("0000", "s") is None and geo.neighbour("0000", "w") == "pbpb"


def test_neighbours_are_the_adjacent_cells() -> None:
    cell = geo.encode(52.37, 4.89, 4)
    lat_min, lat_max, lon_min, lon_max = geo.bounds(cell)
    h, w = lat_max - lat_min, lon_max - lon_min
    clat, clon = geo.decode(cell)
    for direction, (dy, dx) in geo.DIRECTIONS.items():
        expected = geo.encode(clat + dy * h, clon + dx * w, 4)
        assert geo.neighbour(cell, direction) == expected, direction
    assert len(set(geo.neighbours(cell).values()) | {cell}) == 9


def test_haversine() -> None:
    paris, london = (48.8566, 2.3522), (51.5074, -0.1278)
    assert abs(geo.haversine_m(*paris, *london) - 343_556) < 500
    assert geo.haversine_m(*paris, *paris) == 0
    assert geo.haversine_m(*paris, *london) == pytest.approx(geo.haversine_m(*london, *paris))
    one_degree = math.pi * geo.EARTH_RADIUS_M / 180
    assert geo.haversine_m(0, 0, 1, 0) == pytest.approx(one_degree)
    assert geo.haversine_m(0, 179.5, 0, -179.5) == pytest.approx(one_degree)  # across the antimeridian
    assert geo.haversine_m(90, 0, -90, 0) == pytest.approx(math.pi * geo.EARTH_RADIUS_M)


def test_cell_size() -> None:
    width, height = geo.cell_size_m(4)
    assert 39_000 < width < 39_200 and 19_500 < height < 19_600
    width_52, _ = geo.cell_size_m(4, 52.0)
    assert 24_000 < width_52 < 24_100


def test_covering_cells_small_radius_is_the_centre_cell_and_the_neighbours_it_reaches() -> None:
    lat, lon = geo.decode("u173")  # the centre of a cell: 1 km reaches no border
    assert geo.covering_cells(lat, lon, 1000, 4) == ["u173"]
    _, lat_max, _, lon_max = geo.bounds("u173")
    near_ne_corner = (lat_max - 0.001, lon_max - 0.001)  # ~110 m from the north and ~70 m from the east
    cells = geo.covering_cells(*near_ne_corner, 1000, 4)
    assert cells[0] == "u173"
    n = geo.neighbours("u173")
    assert set(cells) == {"u173", n["n"], n["ne"], n["e"]}


def test_covering_cells_grow_in_rings_and_wrap() -> None:
    lat, lon = geo.decode("u173")
    assert len(geo.covering_cells(lat, lon, 15_000, 4)) == 9  # one ring
    assert len(geo.covering_cells(lat, lon, 35_000, 4)) > 9
    cells = geo.covering_cells(0.01, 179.99, 5000, 4)
    assert {geo.encode(0.01, 179.99, 4), geo.encode(0.01, -179.99, 4)} <= set(cells)
    assert len(geo.covering_cells(89.99, 0.0, 5000, 4)) == 1024  # every column at the pole


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(-80, 80),
    lon=st.floats(-180, 180),
    radius_km=st.floats(0.01, 40),
    bearing=st.floats(0, 2 * math.pi),
    fraction=st.floats(0, 1),
)
def test_every_point_within_the_radius_is_in_a_covering_cell(
    lat: float, lon: float, radius_km: float, bearing: float, fraction: float
) -> None:
    # A point at distance fraction * radius in direction `bearing` (great-circle destination).
    radius_m = radius_km * 1000
    angle = fraction * radius_m / geo.EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(angle) + math.cos(p1) * math.sin(angle) * math.cos(bearing))
    l2 = l1 + math.atan2(
        math.sin(bearing) * math.sin(angle) * math.cos(p1), math.cos(angle) - math.sin(p1) * math.sin(p2)
    )
    lat2 = math.degrees(p2)
    lon2 = (math.degrees(l2) + 180) % 360 - 180
    cells = geo.covering_cells(lat, lon, radius_m, 4)
    assert geo.encode(lat2, lon2, 4) in cells
    assert len(cells) <= geo.covering_cells_max(lat, radius_m, 4)
    assert len(cells) == len(set(cells)) and cells[0] == geo.encode(lat, lon, 4)
