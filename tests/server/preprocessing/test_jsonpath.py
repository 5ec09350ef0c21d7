"""Zabbix's JSONPath dialect: segments, filters, functions, deep scan, and the errors."""

from __future__ import annotations

import json
import re

import pytest
from vigil.server.preprocessing.jsonpath import JSONPathError, NoMatch, compile_path, query

STORE = json.dumps({
    "store": {
        "book": [
            {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
            {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
            {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553", "price": 8},
            {"category": "fiction", "author": "J. R. R. Tolkien", "title": "Rings", "isbn": "0-395", "price": 22.99},
        ],
        "bicycle": {"color": "red", "price": 19.95, "in.stock": True, "note": None},
    },
    "limit": 10,
    "names": ["a", "b"],
})


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("$.store.bicycle.color", "red"),
        ("$['store']['bicycle']['color']", "red"),
        ("$.['store'].[\"bicycle\"].color", "red"),
        ("$.store.bicycle['in.stock']", "true"),
        ("$.store.bicycle.note", "null"),
        ("$.store.bicycle.price", "19.95"),
        ("$.limit", "10"),
        ("$.names", '["a","b"]'),
        ("$.store.book[0].author", "Nigel Rees"),
        ("$.store.book[-1].title", "Rings"),
        ("$.store.bicycle", '{"color":"red","price":19.95,"in.stock":true,"note":null}'),
    ],
)
def test_definite_paths_return_the_value(path: str, want: str):
    assert query(path, STORE) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("$.store.book[*].price", [8.95, 12.99, 8, 22.99]),
        ("$.store.book[0,2].title", ["Sayings", "Moby Dick"]),
        ("$.store.book[1:3].title", ["Sword", "Moby Dick"]),
        ("$.store.book[-2:].title", ["Moby Dick", "Rings"]),
        ("$.store.book[:1].title", ["Sayings"]),
        ("$.store.book[::2].title", ["Sayings", "Moby Dick"]),
        ("$.store.bicycle['color','price']", ["red", 19.95]),
        ("$.store.bicycle.*", ["red", 19.95, True, None]),
        ("$..price", [8.95, 12.99, 8, 22.99, 19.95]),
        ("$..book[0].title", ["Sayings"]),
        ("$..isbn", ["0-553", "0-395"]),
        ("$.store.*~", ["book", "bicycle"]),
        ("$.store.book[?(@.category == 'fiction')].title", ["Sword", "Moby Dick", "Rings"]),
        ('$.store.book[?(@.category != "fiction")].title', ["Sayings"]),
        ("$.store.book[?(@.price < 10)].title", ["Sayings", "Moby Dick"]),
        ("$.store.book[?(@.price >= 12.99 && @.isbn)].title", ["Rings"]),
        ("$.store.book[?(@.price > 20 || @.category == 'reference')].title", ["Sayings", "Rings"]),
        ("$.store.book[?(!@.isbn)].title", ["Sayings", "Sword"]),
        ("$.store.book[?(!(@.price < 10))].title", ["Sword", "Rings"]),
        ("$.store.book[?(@.price > $.limit)].title", ["Sword", "Rings"]),
        ("$.store.book[?(@.author =~ '^[EH]')].title", ["Sword", "Moby Dick"]),
        ("$.store.book[?(@.price == '8')].title", ["Moby Dick"]),  # numeric text compares as a number
        ("$..book[?(@.isbn)].isbn", ["0-553", "0-395"]),
    ],
)
def test_indefinite_paths_return_an_array(path: str, want: list[object]):
    assert json.loads(query(path, STORE)) == want
    assert not compile_path(path).definite


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("$.store.book.length()", "4"),
        ("$.store.book[*].price.length()", "4"),
        ("$.store.book[?(@.price > 100)].length()", "0"),
        ("$.store.book[*].price.sum()", "52.93"),
        ("$.store.book[*].price.min()", "8"),
        ("$.store.book[*].price.max()", "22.99"),
        ("$.store.book[0,2].price.avg()", "8.475"),
        ("$.store.book[?(@.category == 'fiction')].title.first()", "Sword"),
        ("$.store.book.first().title", "Sayings"),
        ("$.store.book[?(@.isbn)].first().title", "Moby Dick"),
        ("$.names.first()", "a"),
        ("$.names.length()", "2"),
    ],
)
def test_functions(path: str, want: str):
    assert query(path, STORE) == want


def test_numbers_come_back_as_written():
    doc = '{"a": 1.50, "b": 1e3, "c": -0.0, "d": 12345678901234567890, "e": [1.50, 2.25]}'
    assert [query(f"$.{k}", doc) for k in "abcd"] == ["1.50", "1e3", "-0.0", "12345678901234567890"]
    assert query("$.e.sum()", doc) == "3.75"
    assert query("$.e.first()", doc) == "1.50"


def test_aggregates_of_numeric_strings():
    assert query("$.v.sum()", '{"v": ["1", "2.5", 3]}') == "6.5"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("$.store.nothing", "no data matches $.store.nothing"),
        ("$.store.book[9]", "no data matches $.store.book[9]"),
        ("$.store.book[?(@.price > 100)].title", "no data matches"),
        ("$.store.bicycle.length()", "cannot apply length() to a JSON dict, only to an array"),
        ("$.store.book[*].title.sum()", "cannot apply sum() to a non-numeric value 'Sayings'"),
        ("$.store.book[?(@.price > 100)].price.avg()", "cannot apply avg() to an empty array"),
        ("$.store.book[?(@.price > 100)].first()", "first(): no data matches the path"),
    ],
)
def test_no_match_errors(path: str, message: str):
    with pytest.raises(NoMatch, match=re.escape(message)):
        query(path, STORE)


@pytest.mark.parametrize(
    ("path", "fragment", "pos"),
    [
        ("", "the path is empty", 0),
        ("store.book", "a path starts with '$'", 0),
        ("$.", "a name is missing after '.'", 2),
        ("$.a..", "a name is missing after '.'", 5),
        ("$.a.nope()", "unknown function nope()", 4),
        ("$[1:2:0]", "a slice step cannot be 0", 2),
        ("$[a]", "bad index [a]", 2),
        ("$[1", "missing ']'", 1),
        ("$['a", "unterminated string", 2),
        ("$[?(@.a == )]", "expected '@', '$', a string or a number in the filter", 11),
        ("$[?(@.a == 1]", "expected ')'", 12),
        ("$[?(@.a =~ '(')]", "bad regular expression '('", 14),
        ("$[?(@.a =~ 5)]", "=~ needs a quoted regular expression", 12),
        ("$.a b", "unexpected ' '", 3),
        ("$.a.length()~", "'~' cannot follow a function", 12),
    ],
)
def test_parse_errors_name_the_position(path: str, fragment: str, pos: int):
    with pytest.raises(JSONPathError) as e:
        compile_path(path)
    assert fragment in str(e.value)
    assert e.value.pos == pos
    assert str(e.value).endswith(f"at position {pos}")


def test_quoted_names_with_escapes_and_unicode():
    doc = json.dumps({"it's": {"naïve": "ü"}}, ensure_ascii=False)
    assert query("$['it\\'s']['naïve']", doc) == "ü"


def test_absurd_nesting_in_a_filter_is_a_parse_error():
    with pytest.raises(JSONPathError, match="nested too deeply"):
        compile_path("$[?(" + "(" * 5000 + "@.a" + ")" * 5000 + ")]")


def test_not_json():
    with pytest.raises(ValueError, match="the value is not JSON"):
        query("$.a", "{")
