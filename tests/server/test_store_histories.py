"""Store.histories: several items' values in one call, each in its own window, on both backends."""

from __future__ import annotations

import pytest
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ValueType
from vigil.server.store.base import Store, StoreError, WriteBatch


def test_histories_match_history_per_item(store: Store, migrated_url: str) -> None:
    from vigil.server.config.migrate import engine_for

    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict({"hosts": [{"host": "h", "items": [
        {"key": "a"}, {"key": "b", "value_type": "unsigned"}, {"key": "c"}, {"key": "empty"}]}]}))
    ids = {k: repo.item("h", k)[0] for k in ("a", "b", "c", "empty")}  # type: ignore[index]
    engine.dispose()
    store.write(WriteBatch(floats=[(ids["a"], 1000 + i, 0, float(i)) for i in range(10)]
                           + [(ids["c"], 5000 + i, i, 0.5 * i) for i in range(5)],
                           uints=[(ids["b"], 1000 + i, 0, 2**64 - 1 - i) for i in range(10)]))
    windows = {ids["a"]: (ValueType.FLOAT, 1002, 1005), ids["b"]: (ValueType.UNSIGNED, 1000, 1003),
               ids["c"]: (ValueType.FLOAT, 0, 9999), ids["empty"]: (ValueType.FLOAT, 0, 9999)}
    got = store.histories(windows)
    assert got == {i: store.history(i, vt, lo, hi) for i, (vt, lo, hi) in windows.items()}
    assert [v for _, _, v in got[ids["a"]]] == [2.0, 3.0, 4.0, 5.0]
    assert got[ids["b"]][0][2] == 2**64 - 1 and got[ids["empty"]] == []
    assert [r[:2] for r in store.histories(windows, 2)[ids["c"]]] == [(5000, 0), (5001, 1)]
    assert store.histories({}) == {}
    with pytest.raises(StoreError):
        store.histories({ids["a"]: (9, 0, 1)})  # type: ignore[dict-item]
