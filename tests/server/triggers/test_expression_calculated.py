"""Calculated-item formulas: `//key`, aggregates over foreach functions and item filters (parse(calculated=True))."""

from __future__ import annotations

from typing import Any

import pytest
from vigil.server.triggers.expression import (
    EvaluationError,
    ExpressionError,
    evaluate,
    filter_matches,
    key_matches,
    parse,
)

from tests.server.triggers.memsource import MemorySource

NOW = 1_000_000


class AggSource(MemorySource):
    """MemorySource with what the calculated poller's source adds: `//key` and item filters."""

    def __init__(self, own: str) -> None:
        super().__init__()
        self.own = own
        self.meta: dict[tuple[str, str], tuple[set[str], list[tuple[str, str]]]] = {}

    def put(self, host: str, key: str, values: list[tuple[int, Any]], groups: set[str] = frozenset(),  # type: ignore[assignment]
            tags: list[tuple[str, str]] = (), value_type: int = 0, **info: Any) -> None:  # type: ignore[assignment]
        self.add(host, key, value_type, values, **info)
        self.meta[(host, key)] = (set(groups), list(tags))

    def item(self, host: str, key: str) -> Any:
        return super().item(host or self.own, key)

    def select(self, host: str, key: str, flt: Any) -> list[tuple[str, Any]]:
        return [(f"/{h}/{k}", info) for (h, k), info in self.items.items()
                if (host == "*" or h == (host or self.own)) and key_matches(key, k)
                and filter_matches(flt, *self.meta[(h, k)])]


@pytest.fixture
def src() -> AggSource:
    s = AggSource("web1")
    s.put("web1", "net.if.in[eth0]", [(NOW - 10, 100.0), (NOW - 5, 300.0)])
    s.put("web1", "net.if.out[eth0]", [(NOW - 5, 23.5)])
    s.put("web1", "vfs.fs.size[/,pused]", [(NOW - 5, 40.0)], {"Linux servers"}, [("env", "prod")])
    s.put("web2", "vfs.fs.size[/,pused]", [(NOW - 7200, 10.0), (NOW - 5, 60.0)], {"Linux servers"},
          [("env", "test")])
    s.put("db1", "vfs.fs.size[/,pused]", [(NOW - 5, 90.0)], {"Databases"}, [("env", "prod")])
    s.put("db1", "vfs.fs.size[/var,pused]", [(NOW - 5, 95.0)], {"Databases"})
    s.put("web3", "vfs.fs.size[/,pused]", [], {"Linux servers"})  # no data: left out
    s.put("bad", "vfs.fs.size[/,pused]", [(NOW - 5, 1.0)], {"Linux servers"}, error="gone")  # unsupported: left out
    return s


@pytest.mark.parametrize(("formula", "value"), [
    ("last(//net.if.in[eth0])+last(//net.if.out[eth0])", 323.5),
    ("avg(/web1/net.if.in[eth0],1h)", 200.0),
    ('avg(last_foreach(/*/vfs.fs.size[/,pused]?[group="Linux servers"]))', 50.0),
    ("max(last_foreach(/*/vfs.fs.size[*,pused]))", 95.0),
    ('sum(last_foreach(/*/vfs.fs.size[/,pused]?[tag="env:prod"]))', 130.0),
    ('count(last_foreach(/*/vfs.fs.size[/,pused]?[tag="env"]))', 3.0),
    ('count(exists_foreach(/*/vfs.fs.size[/,pused]?[group<>"Linux servers" or tag="env:test"]))', 2.0),
    ('min(max_foreach(/*/vfs.fs.size[/,pused]?[(group="Linux servers" and tag="env") or group="Databases"],1h))',
     40.0),
    ('sum(count_foreach(/*/vfs.fs.size[/,pused]?[group="Linux servers"],3h))', 3.0),
    ('avg(last_foreach(/*/vfs.fs.size[/,pused]?[group="Linux servers"],1h))', 50.0),
    ("max(last(/web1/net.if.out[eth0]),last(//net.if.in[eth0]),last(/nowhere/x))", 300.0),
    ('avg(last_foreach(/web2/vfs.fs.size[/,pused]))*2', 120.0),
])
def test_formulas(src: AggSource, formula: str, value: float) -> None:
    assert evaluate(parse(formula, calculated=True), src, NOW, {}) == pytest.approx(value)


@pytest.mark.parametrize(("formula", "why"), [
    ('avg(last_foreach(/*/vfs.fs.size[/,pused]?[group="Nobody"]))', "no item matches the filter"),
    ('avg(last_foreach(/web3/vfs.fs.size[/,pused]))', "avg() at position 0: no data from last_foreach("),
    ("last(//nope)", "no item 'nope' on the calculated item's host"),
    ("last(//net.if.in[eth0])/0", "division by zero at position 23"),
])
def test_unknown_values_say_why(src: AggSource, formula: str, why: str) -> None:
    with pytest.raises(EvaluationError) as e:
        evaluate(parse(formula, calculated=True), src, NOW, {})
    assert why in str(e.value)


@pytest.mark.parametrize(("formula", "message"), [
    ("last(//k)+", "expected a value after '+', found the end of the expression at position 10"),
    ('avg(last_foreach(/*/k?[group="A" and ]))', "expected group=\"...\" or tag=\"...\" in the item filter, "
                                                 "found ']' at position 37"),
    ('avg(last_foreach(/*/k?[group="A"))', "expected ']' to end the item filter, found ')' at position 32"),
    ("avg(sum_foreach(/*/k,#3))", "takes a time period, not a count (#N) at position 21"),
    ("avg(exists_foreach(/*/k,1h))", "exists_foreach() takes no time period at position 24"),
    ("avg(last_foreach(/*/k),last(/h/k))", "avg() takes one foreach function, expected ')' after it, found ',' "
                                            "at position 22"),
    ("avg(1,2)", "avg() of several items takes functions like last(/host/key)"),
    ("sum(avg(last_foreach(/*/k)))", "sum() cannot hold another aggregate function at position 4"),
    ("last(/*/k)", "expected a host name after '/', found '*' at position 6"),
])
def test_syntax_errors_have_their_position(formula: str, message: str) -> None:
    with pytest.raises(ExpressionError) as e:
        parse(formula, calculated=True)
    assert message in str(e.value)


def test_trigger_expressions_keep_their_rules() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("last(//k)>0")
    assert "an empty host: triggers need the host name" in str(e.value)
    with pytest.raises(ExpressionError) as e:
        parse("avg(last_foreach(/*/k))>0")
    assert "needs an item reference /host/key" in str(e.value)


def test_key_and_filter_matching() -> None:
    assert key_matches("vfs.fs.size[*,pused]", "vfs.fs.size[/var,pused]")
    assert not key_matches("vfs.fs.size[*,pused]", "vfs.fs.size[/var,free]")
    assert not key_matches("vfs.fs.size[*]", "vfs.fs.size[/,pused]")
    assert key_matches("agent.ping", "agent.ping") and not key_matches("agent.ping", "agent.version")
    flt = parse('avg(last_foreach(/*/k?[group="A" and (tag="t" or tag<>"u:1")]))', calculated=True).foreach[0].filter
    assert filter_matches(flt, {"A"}, [("t", "x")])
    assert filter_matches(flt, {"A"}, [("u", "2")])
    assert not filter_matches(flt, {"A"}, [("u", "1")])
    assert not filter_matches(flt, {"B"}, [("t", "x")])
