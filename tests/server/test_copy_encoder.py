"""The compiled COPY encoder (server/store/_copy.c) against the Python path it stands in for.

Whatever rows it takes, it must give the bytes of _copy_binary(_by_item(rows)) (encode_uints first for
unsigned rows) and the clocks of check_clocks; whatever it declines, the Python path decides, so a bad
row is named as before. Then both paths through real PostgreSQL store the same history.
"""

from __future__ import annotations

import random
import struct

import pytest
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store, postgres
from vigil.server.store.base import StoreError, WriteBatch, check_clocks, encode_uints

_copy = pytest.importorskip("vigil.server.store._copy", reason="the compiled COPY encoder is not built here")

INT4 = (-2**31, 2**31 - 1)
T0 = 1_700_000_000
END = 2**31 - 1


class Int(int):
    pass


class Float(float):
    pass


def python_path(rows: list, uint: bool) -> tuple[bytes, int, int]:
    table = "history_uint" if uint else "history"
    lo, hi = check_clocks(table, rows)
    if uint:
        rows = encode_uints(rows)
    return postgres._copy_binary(table, postgres._by_item(rows)), lo, hi


def random_rows(rng: random.Random, n: int, uint: bool, items: int) -> list:
    def value() -> float | int:
        if uint:
            return rng.choice([0, 1, 2**63 - 1, 2**63, 2**64 - 1, rng.randrange(2**64), rng.randrange(1000)])
        return rng.choice([0.0, -0.0, 1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324,
                           rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-300, 300),
                           float("nan"), float("inf"), float("-inf"), float(rng.randrange(2**53))])
    lo_item = rng.choice([1, INT4[0], INT4[1] - items])
    return [(lo_item + rng.randrange(items), rng.choice([0, END, T0 + rng.randrange(-86400, 86400)]),
             rng.choice([0, 999_999_999, INT4[0], INT4[1], rng.randrange(10**9)]), value()) for _ in range(n)]


@pytest.mark.parametrize("uint", [False, True], ids=["history", "history_uint"])
def test_random_rows_give_the_python_paths_bytes_and_clocks(uint: bool) -> None:
    rng = random.Random(20261203 + uint)
    for _ in range(400):
        rows = random_rows(rng, rng.choice([1, 2, 3, 250, rng.randrange(1, 1200)]), uint, rng.choice([1, 3, 1000]))
        got = _copy.numeric(rows, uint)
        assert got is not None
        assert got == python_path(rows, uint)


def test_an_items_rows_keep_their_order_and_sorted_rows_stay_as_they_are() -> None:
    rows = [(7, T0 + 5, 0, 1.0), (3, T0, 1, 2.0), (7, T0 + 1, 0, 3.0), (3, T0 - 9, 0, 4.0), (-2, T0, 0, 5.0)]
    data, lo, hi = _copy.numeric(rows, False)
    assert (lo, hi) == (T0 - 9, T0 + 5)
    body = data[19:-2]
    fields = [struct.unpack(">hiiiiiiid", body[k:k + 38]) for k in range(0, len(body), 38)]
    assert [(f[2], f[4], f[6], f[8]) for f in fields] == [
        (-2, T0, 0, 5.0), (3, T0, 1, 2.0), (3, T0 - 9, 0, 4.0), (7, T0 + 5, 0, 1.0), (7, T0 + 1, 0, 3.0)]
    in_order = sorted(rows, key=lambda r: r[0])
    assert _copy.numeric(in_order, False)[0] == data
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8)) and data.endswith(b"\xff\xff")


def test_unsigned_values_past_2_63_are_written_as_their_signed_form() -> None:
    rows = [(1, T0, 0, 2**64 - 1), (1, T0, 1, 2**63), (1, T0, 2, 2**63 - 1), (1, T0, 3, 0)]
    body = _copy.numeric(rows, True)[0][19:-2]
    assert [struct.unpack(">q", body[k + 30:k + 38])[0] for k in range(0, len(body), 38)] == [
        -1, -2**63, 2**63 - 1, 0]


DECLINED = [
    ([], False),
    ([[1, T0, 0, 1.0]], False),  # a list, not a tuple
    ([(1, T0, 0)], False),
    ([(1, T0, 0, 1.0, 5)], False),
    ([(True, T0, 0, 1.0)], False),
    ([(Int(1), T0, 0, 1.0)], False),
    ([(1.0, T0, 0, 1.0)], False),
    ([(2**31, T0, 0, 1.0)], False),
    ([(-2**31 - 1, T0, 0, 1.0)], False),
    ([(1, -1, 0, 1.0)], False),
    ([(1, 2**31, 0, 1.0)], False),
    ([(1, float(T0), 0, 1.0)], False),
    ([(1, T0, 2**31, 1.0)], False),
    ([(1, T0, None, 1.0)], False),
    ([(1, T0, 0, 1)], False),  # an int where a float is due: struct takes it, the Python path decides
    ([(1, T0, 0, Float(1.0))], False),
    ([(1, T0, 0, "1.0")], False),
    ([(1, T0, 0, 1.0)] * 5 + [(1, T0, 0, "x")], False),  # a bad row anywhere declines them all
    ([(1, T0, 0, -1)], True),
    ([(1, T0, 0, 2**64)], True),
    ([(1, T0, 0, 1.0)], True),
    ([(1, T0, 0, "7")], True),
    ([(1, T0, 0, Int(7))], True),
    ([(1, T0, 0, False)], True),
]


@pytest.mark.parametrize("rows, uint", DECLINED)
def test_anything_but_plain_rows_in_range_is_left_to_the_python_path(rows: list, uint: bool) -> None:
    assert _copy.numeric(rows, uint) is None


def test_not_a_list_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _copy.numeric(((1, T0, 0, 1.0),), False)


def test_both_paths_store_the_same_history_in_postgresql(migrated_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    floats = [(1 + rng.randrange(20), T0 + rng.randrange(-7200, 7200), rng.randrange(10**9),
               rng.choice([1e308, -1e308, 5e-324, -0.0, rng.uniform(-1e9, 1e9)])) for _ in range(600)]
    uints = [(21 + rng.randrange(5), T0 + rng.randrange(-7200, 7200), rng.randrange(10**9),
              rng.choice([0, 2**63, 2**64 - 1, rng.randrange(2**64)])) for _ in range(300)]
    store = open_store(migrated_pg_url)
    try:
        store.write(WriteBatch(floats=floats[:300], uints=uints[:150]))  # compiled
        monkeypatch.setattr(postgres, "_copy", None)
        store.write(WriteBatch(floats=floats[300:], uints=uints[150:]))  # Python
        monkeypatch.undo()
        for itemid in range(1, 21):
            want = sorted((c, n, v) for i, c, n, v in floats if i == itemid)
            assert sorted(store.history(itemid, ValueType.FLOAT, 0, END)) == want
        for itemid in range(21, 26):
            want = sorted((c, n, v) for i, c, n, v in uints if i == itemid)
            assert sorted(store.history(itemid, ValueType.UNSIGNED, 0, END)) == want
        with pytest.raises(StoreError, match=r"history_uint: value 18446744073709551616 of item 21"):
            store.write(WriteBatch(uints=[(21, T0, 0, 5), (21, T0, 1, 2**64)]))
        with pytest.raises(StoreError, match=r"history: a clock is not an integer"):
            store.write(WriteBatch(floats=[(1, T0, 0, 1.0), (1, "x", 0, 1.0)]))  # type: ignore[list-item]
        assert len(store.history(21, ValueType.UNSIGNED, 0, END)) == len([u for u in uints if u[0] == 21])
    finally:
        store.close()
