"""The store contract, run against MemoryStore and DynamoStore (moto, table from template.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.store.base import Child, ListQuery, ObjectMissing, ObjectRef, WriteResult

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ref(oid: str = "LOC1", module: str = "locations") -> ObjectRef:
    return ObjectRef(module, "NL", "CPO", oid)


def test_put_get_and_stale_write_never_overwrites(any_store) -> None:
    r = ref()
    assert any_store.put(r, {"id": "LOC1", "name": "new"}, at(2), collection="own") is WriteResult.CREATED
    assert any_store.put(r, {"id": "LOC1", "name": "old"}, at(1), collection="own") is WriteResult.STALE
    assert any_store.get(r).body["name"] == "new"
    assert any_store.put(r, {"id": "LOC1", "name": "newer"}, at(3), collection="own") is WriteResult.UPDATED
    # The same last_updated again is an idempotent retry: applied.
    assert any_store.put(r, {"id": "LOC1", "name": "again"}, at(3), collection="own") is WriteResult.UPDATED
    assert any_store.get(r).body["name"] == "again"


def test_ids_are_case_insensitive_in_keys_but_bodies_keep_case(any_store) -> None:
    any_store.put(ref("abc"), {"id": "abc"}, at(0), collection="own")
    got = any_store.get(ObjectRef("locations", "nl", "cpo", "ABC"))
    assert got is not None and got.body["id"] == "abc"


def test_variants_are_separate_objects(any_store) -> None:
    rfid = ObjectRef("tokens", "NL", "MSP", "UID1", "RFID")
    app = ObjectRef("tokens", "NL", "MSP", "UID1", "APP_USER")
    any_store.put(rfid, {"type": "RFID"}, at(0), collection="own")
    any_store.put(app, {"type": "APP_USER"}, at(0), collection="own")
    assert any_store.get(rfid).body["type"] == "RFID"
    assert any_store.get(app).body["type"] == "APP_USER"


def test_patch_changes_only_sent_fields_and_respects_time(any_store) -> None:
    r = ref()
    any_store.put(r, {"id": "LOC1", "name": "a", "city": "X", "last_updated": "t0"}, at(1), collection="own")
    assert any_store.patch(r, {"name": "b", "last_updated": "t2"}, at(2)) is WriteResult.UPDATED
    assert any_store.patch(r, {"name": "stale"}, at(0)) is WriteResult.STALE
    got = any_store.get(r)
    assert got.body == {"id": "LOC1", "name": "b", "city": "X", "last_updated": "t2"}
    with pytest.raises(ObjectMissing):
        any_store.patch(ref("NOPE"), {"name": "x"}, at(3))


def test_children_are_separate_and_parent_follows(any_store) -> None:
    r = ref()
    kids = [Child(f"EVSE{i}", {"uid": f"EVSE{i}", "status": "AVAILABLE"}, at(1), order=i) for i in range(3)]
    any_store.put(
        r, {"id": "LOC1", "last_updated": "2024-01-01T12:01:00Z"}, at(1), collection="own", children=kids
    )
    assert any_store.patch_child(r, "EVSE1", {"status": "CHARGING"}, at(5)) is WriteResult.UPDATED
    got = any_store.get(r)
    assert [c.child_id for c in got.children] == ["EVSE0", "EVSE1", "EVSE2"]
    assert got.children[1].body["status"] == "CHARGING"
    assert got.body["last_updated"] == "2024-01-01T12:05:00Z"
    # Older child change: ignored, parent untouched.
    assert any_store.patch_child(r, "EVSE1", {"status": "AVAILABLE"}, at(4)) is WriteResult.STALE
    assert any_store.get(r).children[1].body["status"] == "CHARGING"
    # New child under an existing parent; unknown child / parent.
    assert any_store.put_child(r, Child("EVSE9", {"uid": "EVSE9"}, at(6), order=9)) is WriteResult.CREATED
    with pytest.raises(ObjectMissing):
        any_store.patch_child(r, "GHOST", {"status": "x"}, at(7))
    with pytest.raises(ObjectMissing):
        any_store.put_child(ref("NOPE"), Child("E", {}, at(7)))
    assert any_store.get(ref("NOPE")) is None
    # A PUT of the parent with fewer children replaces them.
    any_store.put(r, {"id": "LOC1"}, at(8), collection="own", children=kids[:1])
    assert [c.child_id for c in any_store.get(r).children] == ["EVSE0"]


def test_delete(any_store) -> None:
    r = ref()
    any_store.put(r, {"id": "LOC1"}, at(1), collection="own", children=[Child("E", {}, at(1))])
    assert any_store.delete(r) is True
    assert any_store.get(r) is None
    assert any_store.delete(r) is False


def _fill(store, n: int, collection: str = "own", prefix: str = "L") -> None:
    for i in range(n):
        store.put(ref(f"{prefix}{i:03d}"), {"id": f"{prefix}{i:03d}"}, at(i), collection=collection)


def _crawl(store, q: ListQuery) -> list[str]:
    seen: list[str] = []
    cursor, offset = None, q.offset
    while True:
        page = store.list(ListQuery(q.collection, q.module, q.date_from, q.date_to, offset, q.limit, cursor))
        seen += [o.body["id"] for o in page.items]
        if page.next_offset is None:
            return seen
        offset, cursor = page.next_offset, page.next_cursor


@pytest.mark.parametrize("n,limit", [(0, 5), (10, 5), (11, 5), (3, 100)])
def test_crawl_with_cursor_returns_everything_once_in_order(any_store, n: int, limit: int) -> None:
    _fill(any_store, n)
    _fill(any_store, 4, collection="other", prefix="X")  # never leaks into "own"
    ids = _crawl(any_store, ListQuery("own", "locations", limit=limit))
    assert ids == [f"L{i:03d}" for i in range(n)]


def test_offset_without_cursor_and_totals(any_store) -> None:
    _fill(any_store, 12)
    page = any_store.list(ListQuery("own", "locations", offset=5, limit=4))
    assert [o.body["id"] for o in page.items] == ["L005", "L006", "L007", "L008"]
    assert page.total == 12 and page.next_offset == 9
    last = any_store.list(ListQuery("own", "locations", offset=10, limit=4))
    assert [o.body["id"] for o in last.items] == ["L010", "L011"] and last.next_offset is None
    beyond = any_store.list(ListQuery("own", "locations", offset=50, limit=4))
    assert beyond.items == [] and beyond.total == 12 and beyond.next_offset is None


def test_date_window_is_inclusive_from_exclusive_to(any_store) -> None:
    _fill(any_store, 10)
    ids = _crawl(any_store, ListQuery("own", "locations", date_from=at(3), date_to=at(7), limit=2))
    assert ids == ["L003", "L004", "L005", "L006"]
    page = any_store.list(ListQuery("own", "locations", date_from=at(3), date_to=at(7), limit=2))
    assert page.total == 4


def test_updated_object_moves_to_the_end_of_the_order(any_store) -> None:
    _fill(any_store, 3)
    any_store.patch(ref("L000"), {"name": "x"}, at(100))
    ids = _crawl(any_store, ListQuery("own", "locations", limit=10))
    assert ids == ["L001", "L002", "L000"]


def test_partners_tokens_and_party_claims(any_store) -> None:
    from shared.store.base import TokenRecord

    any_store.put_token(TokenRecord("h1", "p1", "A", expires_at=123))
    assert any_store.get_token("h1").partner_id == "p1"
    assert any_store.consume_token("h1").kind == "A"
    assert any_store.consume_token("h1") is None  # single use
    assert any_store.get_token("h1") is None

    any_store.put_partner({"partner_id": "p1", "status": "REGISTERED", "roles": []})
    any_store.put_partner({"partner_id": "p2", "status": "INVITED"})
    assert [p["partner_id"] for p in any_store.list_partners()] == ["p1", "p2"]

    a = ("CPO", "DE", "ABC")
    assert any_store.claim_parties("p1", [a, ("EMSP", "DE", "ABC")]) == []
    assert any_store.claim_parties("p1", [a]) == []  # re-claiming one's own party is fine
    assert any_store.claim_parties("p2", [("EMSP", "NL", "NEW"), ("cpo", "de", "abc")]) == [a]
    assert any_store.claim_parties("p2", [("EMSP", "NL", "NEW")]) == []  # nothing was claimed before
    any_store.release_parties("p1", [a])
    assert any_store.claim_parties("p2", [a]) == []


def test_child_read_modify_write_detects_concurrent_changes(any_store) -> None:
    from shared.store.base import ConcurrentUpdate

    r = ref()
    any_store.put(r, {"id": "LOC1"}, at(1), collection="own", children=[Child("E1", {"v": 1}, at(1))])
    first = any_store.get_child(r, "e1")  # CiString: case-insensitive
    assert first.body == {"v": 1} and first.version
    any_store.patch_child(r, "E1", {"v": 2}, at(2))  # someone else writes in between
    with pytest.raises(ConcurrentUpdate):
        any_store.put_child(r, Child("E1", {"v": 99}, at(3)), expected_version=first.version)
    again = any_store.get_child(r, "E1")
    assert (
        any_store.put_child(r, Child("E1", {"v": 3}, at(3)), expected_version=again.version)
        is WriteResult.UPDATED
    )
    with pytest.raises(ConcurrentUpdate):
        any_store.put_child(r, Child("E1", {"v": 4}, at(4)), expected_version="")  # "must not exist"
    assert any_store.get_child(r, "E1").body == {"v": 3}
    assert any_store.get_child(r, "NOPE") is None
    any_store.replace_children(r, [Child("E2", {"v": 5}, at(5))])
    assert [c.child_id for c in any_store.get(r).children] == ["E2"]


def test_listed_objects_get_their_children_in_one_batch(any_store) -> None:
    for i in range(3):
        kids = [Child(f"E{j}", {"uid": f"E{j}"}, at(i), order=j) for j in range(i)]
        any_store.put(ref(f"P{i}"), {"id": f"P{i}"}, at(i), collection="own", children=kids)
    any_store.put_child(ref("P0"), Child("NEW", {"uid": "NEW"}, at(9), order=5))  # manifest grows
    any_store.replace_children(ref("P2"), [Child("ONLY", {"uid": "ONLY"}, at(10))])  # manifest replaced
    page = any_store.list(ListQuery("own", "locations", limit=10))
    loaded = {
        o.ref.object_id: [c.child_id for c in o.children] for o in any_store.load_children_many(page.items)
    }
    assert loaded == {"P0": ["NEW"], "P1": ["E0"], "P2": ["ONLY"]}


def test_create_stores_once_and_never_overwrites(any_store) -> None:
    r = ObjectRef("cdrs", "NL", "CPO", "CDR1")
    index = {"GSI2PK": "CR#NL#CPO#ORIG", "GSI2SK": "x"}
    result, existing = any_store.create(
        r, {"id": "CDR1", "v": 1}, at(1), collection="rx", meta={"m": 1}, index=index
    )
    assert (result, existing) == (WriteResult.CREATED, None)
    # A second create, newer or older, different or equal: nothing is written, the stored one comes back.
    for body, when in (({"id": "CDR1", "v": 2}, at(5)), ({"id": "CDR1", "v": 1}, at(1)), ({}, at(0))):
        result, existing = any_store.create(r, body, when, collection="rx")
        assert result is WriteResult.STALE
        assert existing.body == {"id": "CDR1", "v": 1} and existing.meta == {"m": 1}
        assert existing.collection == "rx"
    assert any_store.get(ObjectRef("cdrs", "nl", "cpo", "cdr1")).body == {"id": "CDR1", "v": 1}
    assert any_store.list(ListQuery("rx", "cdrs")).total == 1
    assert [o.ref.object_id.upper() for o in any_store.query_index("GSI2", "CR#NL#CPO#ORIG")] == ["CDR1"]


def test_children_without_manifest_cost_nothing_extra_and_are_read_whole(any_store) -> None:
    r = ObjectRef("sessions", "NL", "CPO", "S1")
    kids = [Child(f"2024-01-01T12:0{i}", {"i": i}, at(1)) for i in range(2)]
    any_store.put(r, {"id": "S1"}, at(1), collection="rx", children=kids, manifest=False)
    new = Child("2024-01-01T12:05", {"i": 5}, at(2))
    assert any_store.put_child(r, new, manifest=False) is WriteResult.CREATED
    assert any_store.put_child(r, new, manifest=False) is WriteResult.UPDATED  # a retry: same key
    assert any_store.put_child(r, Child(new.child_id, {"i": -1}, at(1)), manifest=False) is WriteResult.STALE
    got = any_store.get(r)
    assert [c.body["i"] for c in got.children] == [0, 1, 5]
    assert got.body == {"id": "S1", "last_updated": "2024-01-01T12:02:00Z"}  # the parent follows
    if hasattr(any_store, "client"):  # DynamoDB: no manifest item was written
        item = any_store.client.get_item(
            TableName=any_store.table, Key={"PK": {"S": "O#sessions#NL#CPO#S1"}, "SK": {"S": "K"}}
        )
        assert "Item" not in item
    page = any_store.list(ListQuery("rx", "sessions"))
    assert [c.body["i"] for c in any_store.load_children(page.items[0]).children] == [0, 1, 5]


@pytest.mark.parametrize(
    "cursor",
    [
        {"o": 1, "t": -5, "pk": "O#x", "sk": "2024-01-01T00:00:00.000000Z#O#x"},
        {"o": 1, "t": 5, "pk": "O#x", "sk": ""},
        {"o": 1, "t": 5, "pk": "O#" + "a" * 2000, "sk": "2024-01-01T00:00:00.000000Z#O#x"},
        {"o": 1, "t": 5, "pk": "P#partner", "sk": "2024-01-01T00:00:00.000000Z#O#x"},
        {"o": 1, "t": 5, "pk": "O#x", "sk": "zzz"},
    ],
)
def test_forged_cursors_are_refused(any_store, cursor) -> None:
    from shared.errors import InvalidParameters
    from shared.store.dynamo import encode_cursor

    _fill(any_store, 3)
    with pytest.raises(InvalidParameters):
        any_store.list(ListQuery("own", "locations", offset=1, limit=2, cursor=encode_cursor(cursor)))
