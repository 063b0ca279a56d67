"""Geo query extension on both stores: the GSI2 geohash index kept on location headers (PUT and
PATCH, own and received), the store's query_index, and `nearby` (cell covering, radius filtering,
ordering, limits, EVSEs) through the service and over HTTP (`GET /ext/locations/nearby`)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from shared import geo
from shared.errors import InvalidParameters
from shared.services import geo as geo_svc
from shared.services import locations as svc
from shared.store import keys
from shared.store.base import ObjectRef, WriteResult
from tests.conftest import SPEC_DIR
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import add_partner, hdr

EXAMPLE = json.loads((SPEC_DIR / "2.2.1" / "examples" / "location_example.json").read_text())
CELL = "u173"  # Amsterdam area, 4 characters: 0.35° x 0.18°
LAT_MIN, LAT_MAX, LON_MIN, LON_MAX = geo.bounds(CELL)
LAT_MID = (LAT_MIN + LAT_MAX) / 2
LON_MID = (LON_MIN + LON_MAX) / 2


def loc(
    oid: str, lat: float, lon: float, *, cc: str = "BE", pid: str = "BEC", lu: str = "2024-01-01T00:00:00Z"
):
    body = copy.deepcopy(EXAMPLE)
    body.update(
        {
            "country_code": cc,
            "party_id": pid,
            "id": oid,
            "last_updated": lu,
            "coordinates": {"latitude": f"{lat:.7f}", "longitude": f"{lon:.7f}"},
        }
    )
    return body


@pytest.fixture
def env(any_store):
    headers = add_partner(any_store, "cpo-a", "token-a", [("CPO", "BE", "BEC"), ("CPO", "DE", "AAA")])
    who = svc.objects.Caller(partner_id="cpo-a", kind="C", partner=any_store.get_partner("cpo-a"))
    return {"store": any_store, "who": who, "headers": headers}


def put(env, body: dict, *, own: bool = False):
    who = None if own else env["who"]
    return svc.put_location(env["store"], who, body["country_code"], body["party_id"], body["id"], body)


def ids(results: list[dict]) -> list[str]:
    return [r["location"]["id"] for r in results]


# ------------------------------------------------------------------ the index itself
def test_location_put_writes_the_geo_index_own_and_received(env) -> None:
    store = env["store"]
    put(env, loc("RX1", LAT_MID, LON_MID))
    put(env, loc("OWN1", LAT_MID + 0.01, LON_MID, cc="NL", pid="CPO"), own=True)
    found = store.query_index("GSI2", "G#" + CELL)
    assert sorted(o.ref.object_id for o in found) == ["OWN1", "RX1"]
    assert {o.collection for o in found} == {"rx", "own"}
    assert all(o.children == [] for o in found)  # headers only
    rx = next(o for o in found if o.ref.object_id == "RX1")
    assert rx.body["coordinates"]["latitude"] == f"{LAT_MID:.7f}" and "evses" not in rx.body
    assert store.query_index("GSI2", "G#" + geo.neighbour(CELL, "n")) == []
    # Ordered by GSI2SK (the item's PK).
    assert [keys.object_pk(o.ref) for o in found] == sorted(keys.object_pk(o.ref) for o in found)


def test_store_index_contract(any_store) -> None:
    r = ObjectRef("locations", "NL", "CPO", "X1")
    t0, t1, t2 = (datetime(2024, 1, 1, h, tzinfo=UTC) for h in (1, 2, 3))
    pk = keys.object_pk(r)
    any_store.put(r, {"id": "X1"}, t0, collection="own", index={"GSI2PK": "G#a", "GSI2SK": pk})
    assert [o.ref.object_id for o in any_store.query_index("GSI2", "G#a")] == ["X1"]
    # A stale patch changes nothing, index included.
    assert any_store.patch(r, {"name": "old"}, datetime(2000, 1, 1, tzinfo=UTC), index={"GSI2PK": "G#b"}) is (
        WriteResult.STALE
    )
    assert len(any_store.query_index("GSI2", "G#a")) == 1
    # A patch moves it; a patch without index keeps it where it is.
    any_store.patch(r, {"name": "n"}, t1, index={"GSI2PK": "G#b"})
    assert any_store.query_index("GSI2", "G#a") == []
    assert any_store.query_index("GSI2", "G#b")[0].body == {"id": "X1", "name": "n"}
    any_store.patch(r, {"name": "m"}, t1)
    assert len(any_store.query_index("GSI2", "G#b")) == 1
    # None removes an index attribute: out of the (sparse) index.
    any_store.patch(r, {"name": "k"}, t1, index={"GSI2PK": None})
    assert any_store.query_index("GSI2", "G#b") == []
    # A put replaces the whole header: without index it is in no extra index.
    any_store.put(r, {"id": "X1"}, t2, collection="own", index={"GSI2PK": "G#c", "GSI2SK": pk})
    assert len(any_store.query_index("GSI2", "G#c")) == 1
    any_store.put(r, {"id": "X1"}, t2, collection="own")
    assert any_store.query_index("GSI2", "G#c") == []
    any_store.put(r, {"id": "X1"}, t2, collection="own", index={"GSI2PK": "G#c", "GSI2SK": pk})
    assert any_store.delete(r) and any_store.query_index("GSI2", "G#c") == []
    # Only extra index attributes may be set this way.
    for bad in ({"GSI1PK": "x"}, {"PK": "x"}, {"body": "x"}, {"GSI2XX": "x"}, {"GSI2PK": ""}):
        with pytest.raises(ValueError):
            any_store.put(r, {"id": "X1"}, t2, collection="own", index=bad)
    with pytest.raises(ValueError):
        any_store.query_index("GSI1", "L#locations#own")


def test_patch_with_new_coordinates_moves_the_location_to_its_new_cell(env) -> None:
    store = env["store"]
    body = loc("MOVER", LAT_MID, LON_MID)
    put(env, body)
    far = {"latitude": "50.8503000", "longitude": "4.3517000"}  # Brussels: another cell
    new_cell = geo.encode(50.8503, 4.3517, 4)
    assert new_cell != CELL
    patch = {"coordinates": far, "last_updated": "2024-02-01T00:00:00Z"}
    assert svc.patch_location(store, env["who"], "BE", "BEC", "MOVER", patch).result is WriteResult.UPDATED
    assert store.query_index("GSI2", "G#" + CELL) == []
    assert [o.ref.object_id for o in store.query_index("GSI2", "G#" + new_cell)] == ["MOVER"]
    assert geo_svc.nearby(store, LAT_MID, LON_MID, 5) == []
    moved = geo_svc.nearby(store, 50.8503, 4.3517, 1)
    assert ids(moved) == ["MOVER"] and moved[0]["distance_m"] == 0
    assert moved[0]["location"]["coordinates"] == far
    # An older PATCH with other coordinates is not applied: the location stays in its cell.
    stale = {"coordinates": body["coordinates"], "last_updated": "2024-01-15T00:00:00Z"}
    assert svc.patch_location(store, env["who"], "BE", "BEC", "MOVER", stale).result is WriteResult.STALE
    assert ids(geo_svc.nearby(store, 50.8503, 4.3517, 1)) == ["MOVER"]
    # A PATCH of other fields, an EVSE change, a new PUT: the index follows the stored coordinates.
    svc.patch_location(
        store, env["who"], "BE", "BEC", "MOVER", {"name": "x", "last_updated": "2024-03-01T00:00:00Z"}
    )
    evse = dict(EXAMPLE["evses"][0], status="CHARGING", last_updated="2024-03-02T00:00:00Z")
    svc.put_evse(store, env["who"], "BE", "BEC", "MOVER", evse["uid"], evse)
    found = geo_svc.nearby(store, 50.8503, 4.3517, 1)
    assert ids(found) == ["MOVER"] and found[0]["location"]["name"] == "x"
    put(env, loc("MOVER", LAT_MID, LON_MID, lu="2024-04-01T00:00:00Z"))
    assert geo_svc.nearby(store, 50.8503, 4.3517, 1) == []
    assert ids(geo_svc.nearby(store, LAT_MID, LON_MID, 1)) == ["MOVER"]


# ------------------------------------------------------------------ nearby
def test_points_across_cell_borders_are_found(env) -> None:
    store = env["store"]
    # Centre ~140 m west of the cell's east border and ~110 m south of its north border.
    c_lat, c_lon = LAT_MAX - 0.001, LON_MAX - 0.002
    n = geo.neighbours(CELL)
    across = {
        "EAST": (c_lat, LON_MAX + 0.002),  # in the east neighbour, ~270 m away
        "NORTH": (LAT_MAX + 0.002, c_lon),  # in the north neighbour, ~330 m away
        "NE": (LAT_MAX + 0.001, LON_MAX + 0.001),  # in the north-east neighbour
        "FARW": (c_lat, c_lon - 0.1),  # same cell, ~6.8 km west
    }
    for oid, (lat, lon) in across.items():
        put(env, loc(oid, lat, lon))
    assert geo.encode(*across["EAST"], 4) == n["e"]
    assert geo.encode(*across["NORTH"], 4) == n["n"]
    assert geo.encode(*across["NE"], 4) == n["ne"]
    found = geo_svc.nearby(store, c_lat, c_lon, 1)
    assert set(ids(found)) == {"EAST", "NORTH", "NE"}
    assert ids(geo_svc.nearby(store, c_lat, c_lon, 8))[-1] == "FARW"


def test_radius_filter_ordering_limit_and_evses(env) -> None:
    store = env["store"]
    # Due north of the centre, at ~0.5, 1, 2, 5 and 12 km (1 km ~ 0.008993° of latitude).
    km = 1 / 111.195
    distances = {"D05": 0.5, "D01": 1, "D02": 2, "D05K": 5, "D12": 12}
    for oid, d in reversed(distances.items()):
        put(env, loc(oid, LAT_MID + d * km, LON_MID))
    own = loc("OWN2", LAT_MID - 1.5 * km, LON_MID, cc="NL", pid="CPO")
    put(env, own, own=True)
    got = geo_svc.nearby(store, LAT_MID, LON_MID, 3)
    assert ids(got) == ["D05", "D01", "OWN2", "D02"]
    assert [r["distance_m"] for r in got] == pytest.approx([500, 1000, 1500, 2000], abs=2)
    assert all(isinstance(r["distance_m"], int) for r in got)
    assert ids(geo_svc.nearby(store, LAT_MID, LON_MID, 3, limit=2)) == ["D05", "D01"]
    assert ids(geo_svc.nearby(store, LAT_MID, LON_MID, 20))[-1] == "D12"
    assert "D12" not in ids(geo_svc.nearby(store, LAT_MID, LON_MID, 11.9))
    # The whole location, EVSEs included, exactly as the receiver GET assembles it.
    first = got[0]["location"]
    assert first == svc.get_received(store, env["who"], "BE", "BEC", "D05")
    assert first["evses"] == EXAMPLE["evses"]
    assert got[2]["location"] == svc.get_own(store, "OWN2")


@pytest.mark.parametrize(
    ("args", "word"),
    [
        ((91, 4.9, 1), "latitude"),
        (("abc", 4.9, 1), "latitude"),
        ((None, 4.9, 1), "latitude"),
        ((52.3, 181, 1), "longitude"),
        ((52.3, "nan", 1), "longitude"),
        ((52.3, 4.9, 0), "radius_km"),
        ((52.3, 4.9, -1), "radius_km"),
        ((52.3, 4.9, 200), "radius_km"),
        ((89.9, 4.9, 30), "radius_km"),
        ((52.3, 4.9, 1, 0), "limit"),
        ((52.3, 4.9, 1, 101), "limit"),
        ((52.3, 4.9, 1, "x"), "limit"),
    ],
)
def test_bad_parameters_are_2001(memory_store, args: tuple, word: str) -> None:
    with pytest.raises(InvalidParameters) as err:
        geo_svc.nearby(memory_store, *args)
    assert word in err.value.message


def test_largest_radius_reads_at_most_25_cells() -> None:
    assert len(geo_svc.cells_for(52.37, 4.89, 35)) <= geo_svc.MAX_CELLS
    assert len(geo_svc.cells_for(0.0, 0.0, 40)) <= geo_svc.MAX_CELLS
    with pytest.raises(InvalidParameters):
        geo_svc.cells_for(52.37, 4.89, 40)


def test_http_endpoint(env) -> None:
    put(env, loc("NEAR", LAT_MID + 0.001, LON_MID))
    put(env, loc("FAR", LAT_MID + 0.05, LON_MID))
    api = TestClient(load_app("locations"), raise_server_exceptions=False)
    url = "/ext/locations/nearby"
    # A partner's credentials token does not open it: it reads every CPO's locations we hold.
    partner = api.get(url, params={"latitude": LAT_MID, "longitude": LON_MID}, headers=env["headers"])
    assert partner.status_code == 401 and partner.json()["status_code"] == 2000
    from shared.services.credentials import create_app_client

    _, app_token = create_app_client(env["store"], "our app")
    env = {**env, "headers": hdr(app_token)}
    # ... and an app token opens nothing else.
    assert api.get("/ocpi/2.2.1/sender/locations", headers=env["headers"]).status_code == 401
    resp = api.get(
        url, params={"latitude": LAT_MID, "longitude": LON_MID, "radius_km": 1}, headers=env["headers"]
    )
    body = resp.json()
    assert resp.status_code == 200 and body["status_code"] == 1000, body
    assert [r["location"]["id"] for r in body["data"]] == ["NEAR"]
    assert body["data"][0]["distance_m"] == pytest.approx(111, abs=2)
    assert body["data"][0]["location"]["evses"] == EXAMPLE["evses"]
    # Default radius 10 km: both; limit 1: the nearest.
    both = api.get(url, params={"latitude": LAT_MID, "longitude": LON_MID}, headers=env["headers"]).json()
    assert [r["location"]["id"] for r in both["data"]] == ["NEAR", "FAR"]
    one = api.get(url, params={"latitude": LAT_MID, "longitude": LON_MID, "limit": 1}, headers=env["headers"])
    assert [r["location"]["id"] for r in one.json()["data"]] == ["NEAR"]
    # Bad coordinates: 2001 in the OCPI envelope (HTTP 200, like every OCPI client error).
    bad = api.get(url, params={"latitude": "91", "longitude": "4"}, headers=env["headers"])
    assert (
        bad.status_code == 200
        and bad.json()["status_code"] == 2001
        and "latitude" in bad.json()["status_message"]
    )
    missing = api.get(url, params={"longitude": "4"}, headers=env["headers"])
    assert missing.json()["status_code"] == 2001
    # A credentials token is required.
    anon = api.get(url, params={"latitude": LAT_MID, "longitude": LON_MID})
    assert anon.status_code == 401
    assert (
        api.get(url, params={"latitude": LAT_MID, "longitude": LON_MID}, headers=hdr("nope")).status_code
        == 401
    )
