"""What ingest tells the trigger engine besides committed values: values that arrived not supported."""

from __future__ import annotations

from vigil.server.config.repo import HostRef, ItemRef, Snapshot
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.ingest.values import agent_values, sender_values

NOW = 1_790_000_000
SNAP = Snapshot(1, {"h": HostRef(1, "h", True)}, {
    ("h", "num"): ItemRef(10, 1, ItemType.TRAPPER, ValueType.FLOAT, 60, "num"),
    ("h", "act"): ItemRef(11, 1, ItemType.AGENT_ACTIVE, ValueType.UNSIGNED, 60, "act"),
}, {})


def test_sender_value_its_type_cannot_hold_is_reported_unsupported() -> None:
    out: list[tuple[int, int, str]] = []
    batch, failed = sender_values(SNAP, [{"host": "h", "key": "num", "value": "abc", "clock": NOW},
                                         {"host": "h", "key": "num", "value": "1.5", "clock": NOW},
                                         {"host": "h", "key": "nope", "value": "x"},
                                         "not an object"], NOW, 0, "test", unsupported=out)
    assert failed == 3 and [r[3] for r in batch.floats] == [1.5]
    assert len(out) == 1 and out[0][:2] == (10, NOW) and out[0][2]  # the conversion error says why
    # without a list to fill, the same values give the same reply
    assert sender_values(SNAP, [{"host": "h", "key": "num", "value": "abc"}], NOW, 0, "test")[1] == 1


def test_agent_state_1_and_bad_values_are_reported_unsupported() -> None:
    out: list[tuple[int, int, str]] = []
    data = [{"host": "h", "key": "act", "state": 1, "value": "Unsupported item key.", "clock": NOW, "id": 1},
            {"host": "h", "key": "act", "value": "-5", "clock": NOW, "id": 2},
            {"host": "h", "key": "act", "state": 1, "clock": NOW, "id": 3},
            {"host": "h", "key": "act", "value": "7", "clock": NOW, "id": 4}]
    batch, failed = agent_values(SNAP, "s1", data, {}, NOW, 0, "test", unsupported=out)
    assert failed == 1 and [r[3] for r in batch.uints] == [7]
    assert [(i, c) for i, c, _ in out] == [(11, NOW)] * 3
    assert out[0][2] == "Unsupported item key." and out[2][2] == "not supported" and out[1][2]
