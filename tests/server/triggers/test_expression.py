"""Trigger expression syntax, precedence, unknown propagation, macros and error positions."""

from __future__ import annotations

import pytest
from vigil.server.triggers.expression import (
    EvaluationError,
    Expression,
    ExpressionError,
    FunctionCall,
    evaluate,
    parse,
)

from tests.server.triggers.memsource import MemorySource

NOW = 1_700_000_000


@pytest.fixture
def data() -> MemorySource:
    src = MemorySource()
    src.add("h", "one", 3, [(NOW - 1, 1)])
    src.add("h", "zero", 3, [(NOW - 1, 0)])
    src.add("h", "ten", 0, [(NOW - 1, 10.0), (NOW - 61, 4.0)])
    src.add("h", "float", 0, [(NOW - 1, 1.5000001)])
    src.add("h", "status", 1, [(NOW - 1, "up")])
    src.add("h", "numtext", 4, [(NOW - 1, "42")])
    src.add("h", "vfs.fs.size[/,pfree]", 0, [(NOW - 1, 12.5)])
    src.add("h", 'key["a,b",c]', 0, [(NOW - 1, 7.0)])
    src.add("My host.example", "agent.ping", 3, [(NOW - 1, 1)])
    return src


def ev(text: str, data: MemorySource, macros: dict[str, str] | None = None) -> float:
    return evaluate(parse(text), data, NOW, macros or {})


def unknown(text: str, data: MemorySource, macros: dict[str, str] | None = None) -> str:
    with pytest.raises(EvaluationError) as e:
        ev(text, data, macros)
    return str(e.value)


# --- parsing ---------------------------------------------------------------------------------

def test_function_calls_are_listed_in_order() -> None:
    e = parse('last(/web 1/system.cpu.load[all,avg1])>5 and count(/db/log.err, 5m:now-1h, "like", "a,b)")>0')
    assert isinstance(e, Expression)
    assert e.text.startswith("last(")
    assert e.functions == [
        FunctionCall("last", "web 1", "system.cpu.load[all,avg1]", (), 0),
        FunctionCall("count", "db", "log.err", ("5m:now-1h", "like", "a,b)"), 45),
    ]
    assert e.item_refs() == {("web 1", "system.cpu.load[all,avg1]"), ("db", "log.err")}


@pytest.mark.parametrize("text, host, key", [
    ("last(/h/vfs.fs.size[/,pfree])<10", "h", "vfs.fs.size[/,pfree]"),
    ('last(/h/key["a,b",c])=1', "h", 'key["a,b",c]'),
    ('last(/h/key["a)b"])=1', "h", 'key["a)b"]'),
    ("last(/h/net.if.in[eth0,bytes])>0", "h", "net.if.in[eth0,bytes]"),
    ("last(/h/key[[a,b],c])=1", "h", "key[[a,b],c]"),
    ("last(/h/web.page.get[localhost,/index.html,80])=1", "h", "web.page.get[localhost,/index.html,80]"),
    ("last(/My host.example/agent.ping)=0", "My host.example", "agent.ping"),
    ("last(/a-b_c.d/e-f_g.h)=0", "a-b_c.d", "e-f_g.h"),
    ("last(/h/key[])=0", "h", "key[]"),
])
def test_item_references(text: str, host: str, key: str) -> None:
    (f,) = parse(text).functions
    assert (f.host, f.key) == (host, key)


def test_keys_with_brackets_are_read(data: MemorySource) -> None:
    assert ev("last(/h/vfs.fs.size[/,pfree])", data) == 12.5
    assert ev('last(/h/key["a,b",c])*2', data) == 14.0
    assert ev("last(/My host.example/agent.ping)=1", data) == 1.0


def test_spaces_are_allowed_between_tokens(data: MemorySource) -> None:
    e = parse("  last( /h/ten , #2 )  >  3  ")
    assert e.functions[0].params == ("#2",)
    assert ev("  last( /h/ten , #2 )  >  3  ", data) == 1.0
    assert ev("last(/h/ten)\n>\t3", data) == 1.0


def test_quoted_parameters_keep_commas_and_escaped_quotes() -> None:
    (f,) = parse(r'count(/h/k,#5,"like","say \"hi\", then)")>0').functions
    assert f.params == ("#5", "like", 'say "hi", then)')
    (f,) = parse('find(/h/k,,"like","x")').functions
    assert f.params == ("", "like", "x")


def test_rename_host_changes_only_that_host() -> None:
    text = 'last(/a/k)>1 and avg(/b/a[a],5m)>2 or min(/a/k2,#3)<1 and count(/ab/k,#1,"like","/a/k")=0'
    out = parse(text).rename_host("a", "new host")
    assert out == ('last(/new host/k)>1 and avg(/b/a[a],5m)>2 or min(/new host/k2,#3)<1 and '
                   'count(/ab/k,#1,"like","/a/k")=0')
    assert parse(out).item_refs() == {("new host", "k"), ("b", "a[a]"), ("new host", "k2"), ("ab", "k")}
    assert parse(text).rename_host("zzz", "y") == text


def test_macros_lists_user_macros_as_written() -> None:
    e = parse('last(/h/k)>{$MAX} and avg(/h/k,{$PERIOD})<{$LOW:"/var"} or count(/h/k,#3,"eq","{$V}")=1')
    assert e.macros() == {"{$MAX}", "{$PERIOD}", '{$LOW:"/var"}', "{$V}"}
    assert parse("last(/h/k)>1").macros() == set()


@pytest.mark.parametrize("text, expected", [
    ("last(/h/k)>1", False),
    ("last(/h/k,#2)>1", False),
    ("avg(/h/k,#5)>1", False),
    ("count(/h/k,#3)>1", False),
    ("change(/h/k)>1", False),
    ('find(/h/k,,"like","x")=1', False),
    ("avg(/h/k,5m)>1", True),
    ("avg(/h/k,300)>1", True),
    ("avg(/h/k,#5:now-1h)>1", True),  # a shift from now moves with time
    ("last(/h/k,#1:now-1d)>1", True),
    ("nodata(/h/k,5m)=1", True),
    ("fuzzytime(/h/k,60)=0", True),
    ("trendavg(/h/k,1h:now/h)>1", True),
    ("trendcount(/h/k,1d:now/d)>1", True),
    ("avg(/h/k,{$PERIOD})>1", True),  # not knowable before the macro is resolved: assume it is
    ("last(/h/k)>1 and nodata(/h/k2,1m)=1", True),
])
def test_time_based(text: str, expected: bool) -> None:
    assert parse(text).time_based is expected


# --- operators and precedence ------------------------------------------------------------------
# last(/h/one) is 1 and last(/h/zero) is 0, so the constants do the work.

@pytest.mark.parametrize("text, expected", [
    ("2+3*4*last(/h/one)", 14.0),  # * before +
    ("(2+3)*4*last(/h/one)", 20.0),
    ("10-4-3*last(/h/one)", 3.0),  # left to right: (10-4)-3
    ("64/4/2*last(/h/one)", 8.0),  # (64/4)/2
    ("1+2>2*last(/h/one)", 1.0),  # + before >: 3>2
    ("2*last(/h/one)=1<3", 0.0),  # < before =: 2=(1<3) is 2=1; left to right would give (2=1)<3 = 1
    ("3<>2>1*last(/h/one)", 1.0),  # 3<>(2>1) is 3<>1
    ("last(/h/one) or 1 and 0", 1.0),  # and before or: 1 or (1 and 0); left to right would give 0
    ("last(/h/zero) and 1 or 1", 1.0),  # (0 and 1) or 1
    ("1=1 and 2=2*last(/h/one)", 1.0),  # = before and
    ("not last(/h/zero) and 0", 0.0),  # not before and: (not 0) and 0; not(0 and 0) would be 1
    ("not last(/h/one)=0", 1.0),  # not before =: (not 1)=0
    ("not not last(/h/one)", 1.0),
    ("not last(/h/ten)", 0.0),
    ("-last(/h/one) - -2", 1.0),
    ("-2 < -1*last(/h/one)", 1.0),
    ("- 3 * 2 + last(/h/one)", -5.0),
    ("-(2+3)*last(/h/one)", -5.0),
    ("not(last(/h/zero))", 1.0),
    ("((last(/h/ten)))/4", 2.5),
    ("last(/h/ten)>=10", 1.0),
    ("last(/h/ten)<=10", 1.0),
    ("last(/h/ten)>10", 0.0),
    ("last(/h/ten)<10", 0.0),
    ("last(/h/ten)<>10", 0.0),
    ("last(/h/ten)=10", 1.0),
    ("last(/h/ten)-last(/h/ten,#2)", 6.0),
    ("last(/h/ten) > 5 and last(/h/ten,#2) < 5", 1.0),
    ("last(/h/ten)>20 or last(/h/ten)<5", 0.0),
    ("2 and last(/h/ten)", 1.0),  # logic gives 1, not the operand
    ("0.0000001 or last(/h/zero)", 0.0),  # within the epsilon of 0: false
])
def test_operators(data: MemorySource, text: str, expected: float) -> None:
    assert ev(text, data) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("literal, value", [
    ("1K", 1024.0), ("1.5K", 1536.0), ("1M", 1048576.0), ("1G", 1073741824.0), ("1T", 1099511627776.0),
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0), ("1w", 604800.0), ("1e3", 1000.0),
    ("0.25", 0.25), ("007", 7.0),
])
def test_number_suffixes(data: MemorySource, literal: str, value: float) -> None:
    assert ev(f"last(/h/one)*{literal}", data) == value


def test_equality_of_floats_allows_the_epsilon(data: MemorySource) -> None:
    assert ev("last(/h/float)=1.5", data) == 1.0  # 1.5000001 is within 0.000001
    assert ev("last(/h/float)<>1.5", data) == 0.0
    assert ev("last(/h/float)>1.5", data) == 0.0  # as Zabbix compares: equal within the epsilon
    assert ev("last(/h/float)>=1.5", data) == 1.0
    assert ev("last(/h/float)=1.5001", data) == 0.0
    assert ev("last(/h/float)<1.5001", data) == 1.0


def test_string_comparisons(data: MemorySource) -> None:
    assert ev('last(/h/status)="up"', data) == 1.0
    assert ev('last(/h/status)<>"up"', data) == 0.0
    assert ev('last(/h/status)="down"', data) == 0.0
    assert ev('last(/h/status)<>"down"', data) == 1.0
    assert ev('"up"=last(/h/status)', data) == 1.0
    assert ev('last(/h/status)<"v"', data) == 1.0  # two strings compare as text
    assert ev('last(/h/status)=1', data) == 0.0  # not a number: compared as text, "up" is not "1"
    assert ev(r'last(/h/status)="u\"p"', data) == 0.0
    assert ev('last(/h/status)="up" and last(/h/one)=1', data) == 1.0


def test_numeric_text_compares_as_a_number_with_numbers(data: MemorySource) -> None:
    assert ev("last(/h/numtext)>5", data) == 1.0  # "42" against the number 5: 42 > 5
    assert ev('last(/h/numtext)>"5"', data) == 0.0  # two strings: "42" < "5" as text
    assert ev("last(/h/numtext)+1", data) == 43.0
    assert ev("last(/h/numtext)", data) == 42.0


def test_arithmetic_on_text_is_unknown(data: MemorySource) -> None:
    assert "needs a number, got the string 'up'" in unknown("last(/h/status)+1>0", data)
    assert "not a number" in unknown("last(/h/status)", data)
    assert "operator 'and' needs a number" in unknown('last(/h/status) and 1', data)


# --- unknown ---------------------------------------------------------------------------------

def test_division_by_zero_is_unknown(data: MemorySource) -> None:
    msg = unknown("last(/h/ten)/last(/h/zero)>1", data)
    assert msg == "division by zero at position 12"
    assert "division by zero" in unknown("last(/h/ten)/0.0000001", data)  # zero within the epsilon


@pytest.mark.parametrize("text, expected", [
    ("last(/h/ten)/0>1 or last(/h/one)=1", 1.0),  # a true side decides or
    ("last(/h/one)=1 or last(/h/ten)/0>1", 1.0),
    ("last(/h/ten)/0>1 and last(/h/one)=0", 0.0),  # a false side decides and
    ("last(/h/one)=0 and last(/h/missing)>1", 0.0),
    ("last(/h/missing)>1 or last(/h/one)", 1.0),
    ("(last(/h/missing)>1 and 0) or 0", 0.0),
    ("not (last(/h/missing)>1 and last(/h/zero))", 1.0),
])
def test_unknown_is_decided_by_the_other_side(data: MemorySource, text: str, expected: float) -> None:
    assert ev(text, data) == expected


@pytest.mark.parametrize("text, why", [
    ("last(/h/ten)/0>1 or last(/h/one)=0", "division by zero"),
    ("last(/h/ten)/0>1 and last(/h/one)=1", "division by zero"),
    ("last(/h/missing)>1 and last(/h/one)=1", "last(/h/missing): no item 'missing' on host 'h'"),
    ("last(/h/missing)>1 or last(/h/one)=0", "no item 'missing'"),
    ("not last(/h/missing)", "no item 'missing'"),
    ("last(/h/missing)+1>0", "no item 'missing'"),
    ("-last(/h/missing)", "no item 'missing'"),
    ("last(/h/missing)=1", "no item 'missing'"),
    ("last(/x/one)=1", "no item 'one' on host 'x'"),
    ("avg(/h/ten,1m:now-1d)>0 or last(/h/zero)", "no data"),
])
def test_unknown_propagates_with_why(data: MemorySource, text: str, why: str) -> None:
    assert why in unknown(text, data)


def test_a_function_written_twice_is_read_once(data: MemorySource) -> None:
    e = parse("last(/h/ten)>1 and last(/h/ten)<100 and last(/h/ten,#2)=4")
    assert len(e.functions) == 3
    data.calls.clear()
    assert evaluate(e, data, NOW, {}) == 1.0
    assert [c[4] for c in data.calls] == [1, 2]  # last(/h/ten) once, last(/h/ten,#2) once


def test_overflow_is_unknown(data: MemorySource) -> None:
    assert "too large" in unknown("last(/h/ten)*1e308*10", data)


# --- macros ----------------------------------------------------------------------------------

def test_macros_as_constants(data: MemorySource) -> None:
    assert ev("last(/h/ten)>{$MAX}", data, {"{$MAX}": "4"}) == 1.0
    assert ev("last(/h/ten)>{$MAX}", data, {"{$MAX}": "11"}) == 0.0
    assert ev("last(/h/ten)*{$F}", data, {"{$F}": "1K"}) == 10240.0  # suffixes in the value
    assert ev("last(/h/status)={$STATE}", data, {"{$STATE}": "up"}) == 1.0  # a text value compares as text
    assert ev("last(/h/ten)>{$A.B_1}", data, {"{$A.B_1}": "9.5"}) == 1.0


def test_macros_in_function_parameters(data: MemorySource) -> None:
    # ten: 10 then 4 before it
    assert ev("avg(/h/ten,{$P})", data, {"{$P}": "#2"}) == 7.0
    assert ev("last(/h/ten,{$N})", data, {"{$N}": "#2"}) == 4.0
    assert ev('count(/h/ten,#2,"gt","{$T}")', data, {"{$T}": "5"}) == 1.0
    assert ev('count(/h/ten,#2,{$OP},5)', data, {"{$OP}": "lt"}) == 1.0
    assert ev('count(/h/ten,{$P}:now-{$S})', data, {"{$P}": "#5", "{$S}": "30s"}) == 1.0  # only the 4 is left


def test_a_bad_macro_value_in_a_parameter_is_unknown(data: MemorySource) -> None:
    assert "invalid period '5x'" in unknown("avg(/h/ten,{$P})", data, {"{$P}": "5x"})


def test_an_undefined_macro_is_unknown_and_named(data: MemorySource) -> None:
    assert "user macro {$MAX} is not defined" in unknown("last(/h/ten)>{$MAX}", data, {"{$OTHER}": "1"})
    assert "{$P}" in unknown("avg(/h/ten,{$P})", data)
    # ... unless the other side decides
    assert ev("last(/h/ten)>{$MAX} or last(/h/one)=1", data) == 1.0


def test_macro_context(data: MemorySource) -> None:
    text = 'last(/h/ten)>{$LIM:"cpu"}'
    assert ev(text, data, {'{$LIM:"cpu"}': "11", "{$LIM}": "1"}) == 0.0  # the context's value
    assert ev(text, data, {"{$LIM:cpu}": "12", "{$LIM}": "1"}) == 0.0  # defined without quotes
    assert ev(text, data, {'{$LIM:"disk"}': "12", "{$LIM}": "1"}) == 1.0  # no such context: the plain one
    assert "not defined" in unknown(text, data, {'{$LIM:"disk"}': "0"})
    assert ev("last(/h/ten)>{$LIM:cpu}", data, {'{$LIM:"cpu"}': "11"}) == 0.0


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, pos, fragment", [
    ("", 0, "empty expression"),
    ("   ", 0, "empty expression"),
    ("foo(/h/k)>1", 0, "unknown function 'foo'"),
    ("last(/h/k)>1 and Last(/h/k)<2", 17, "unknown function 'Last'"),
    ("last(/h/k", 9, "expected ')' to close last("),
    ("last(/h/k,#2", 12, "expected ')' to close last("),
    ("avg(/h/k,5x)", 9, "invalid period '5x'"),
    ("avg(/h/k,-5m)", 9, "invalid period '-5m'"),
    ("avg(/h/k,0)", 9, "at least 1 second"),
    ("avg(/h/k,#0)", 9, "invalid count '#0'"),
    ("avg(/h/k,#x)", 9, "invalid count '#x'"),
    ("avg(/h/k)", 0, "avg() takes 1 parameter after the item reference, got 0"),
    ("avg(/h/k,)", 9, "missing period"),
    ("last(/h/k,#1,#2)", 0, "last() takes at most 1 parameter"),
    ("percentile(/h/k,5m)", 0, "percentile() takes 2 parameters"),
    ("change(/h/k,5m)", 0, "change() takes 0 parameters"),
    ("count(/h/k,5m,\"eq\",1,2)", 0, "count() takes at most 3 parameters"),
    ("last()", 5, "needs an item reference /host/key"),
    ("last(5m)", 5, "needs an item reference /host/key"),
    ("last(h/k)", 5, "needs an item reference /host/key"),
    ("last(//k)", 6, "empty host"),
    ("last(/h)", 7, "expected '/' between the host name and the item key"),
    ("last(/h/)", 8, "expected an item key"),
    ("last(/h/k[a)", 12, "missing closing ']'"),
    ('last(/h/k["a)', 10, "unterminated quoted parameter"),
    ("last(/h/k[[a,[b]])", 13, "arrays may not be nested"),
    ("last(/h/k)>", 11, "expected a value after '>'"),
    ("last(/h/k)>>1", 11, "found '>'"),
    ("last(/h/k) and", 14, "expected a value after 'and'"),
    ("(last(/h/k)>1", 13, "expected ')' to close the '(' at offset 0"),
    ("last(/h/k))", 10, "unexpected ')'"),
    ("last(/h/k) 5", 11, "expected an operator or the end"),
    ("last(/h/k)>1 AND 1", 13, "found 'AND'"),
    ("last(/h/k)>1 xor 1", 13, "found 'xor'"),
    ("last(/h/k)=>1", 11, "found '>'"),
    ("last /h/k", 0, "unexpected 'last'"),
    ("nodata(/h/k,#5)", 12, "nodata() takes seconds, not a count"),
    ("nodata(/h/k,5m:now-1h)", 12, "takes no time shift"),
    ("nodata(/h/k,5m,lazy)", 15, "invalid mode 'lazy'"),
    ('count(/h/k,5m,"between",1)', 14, "unknown operator 'between'"),
    ('count(/h/k,5m,"regexp","(")', 23, "invalid regular expression"),
    ('count(/h/k,5m,"bitand","x")', 23, "invalid bitand pattern"),
    ('find(/h/k,,"nearly","x")', 11, "unknown operator 'nearly'"),
    ("trendavg(/h/k,1h)", 14, "a period and a time shift like 1h:now/h"),
    ("trendavg(/h/k,5m:now/h)", 14, "whole number of hours"),
    ("trendavg(/h/k,1d:now/h)", 14, "must not be smaller than the period's (d)"),
    ("trendavg(/h/k,2y:now/y)", 14, "at most a year"),
    ("trendsum(/h/k,1h:now/x)", 14, "invalid time shift"),
    ("trendcount(/h/k,#3:now/h)", 16, "invalid trend period '#3'"),
    ("avg(/h/k,5m:later)", 9, "start with 'now'"),
    ("avg(/h/k,5m:now-1x)", 9, "invalid time shift"),
    ("last(/h/k,5m)", 10, "last() takes a count like #2"),
    ("percentile(/h/k,5m,101)", 19, "invalid percentage '101'"),
    ("percentile(/h/k,5m,x)", 19, "invalid percentage"),
    ('changecount(/h/k,5m,"up")', 20, "invalid mode 'up'"),
    ("first(/h/k,#3)", 11, "a time period, not a count"),
    ("fuzzytime(/h/k,#3)", 15, "fuzzytime() takes seconds"),
    ('last(/h/k)="abc', 11, "unterminated string"),
    ("last(/h/k)>{$}", 11, "invalid user macro"),
    ("last(/h/k)>{$lower}", 11, "invalid user macro"),
    ("last(/h/k)>{$A", 11, "invalid user macro"),
    ("last(/h/k)>{#LLD}", 11, "expected a user macro like {$NAME}"),
    ("1+1", 0, "uses no function"),
    ("last(/h/k)>5x", 11, "invalid number '5x'"),
    ("last(/h/k)>1.2.3", 11, "invalid number '1.2.3'"),
    ('last(/h/k,"#2"x)', 14, "expected ',' or ')'"),
    ('last(/h/k,a"b")', 11, "quote the whole parameter"),
    ("last(/h/k)>-", 12, "found the end of the expression"),
    ("last(/h/k)>1 $ 2", 13, "found '$'"),
])
def test_syntax_errors_say_what_and_where(text: str, pos: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as e:
        parse(text)
    assert e.value.pos == pos, str(e.value)
    assert fragment in str(e.value)
    assert str(e.value).endswith(f"at position {pos}")


def test_expression_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse("last(")


def test_non_text_is_refused() -> None:
    with pytest.raises(ExpressionError) as e:
        parse(5)  # type: ignore[arg-type]
    assert e.value.pos == 0 and "as text" in str(e.value)


def test_very_long_expression_is_refused() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("last(/h/k)" + "+1" * 40000)
    assert "longer than" in str(e.value)


def test_deep_but_reasonable_nesting_parses(data: MemorySource) -> None:
    assert ev("(" * 50 + "last(/h/one)" + ")" * 50, data) == 1.0


def test_nesting_too_deep_is_refused_with_the_position() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("(" * 65 + "last(/h/one)" + ")" * 65)
    assert e.value.pos == 64 and "nested too deeply" in str(e.value)
    with pytest.raises(ExpressionError) as e:
        parse("not " * 70 + "last(/h/one)")
    assert e.value.pos == 64 * 4 and "nested too deeply" in str(e.value)


def test_long_chains_evaluate_and_too_long_ones_are_refused(data: MemorySource) -> None:
    assert ev("last(/h/one)" + "+1" * 249, data) == 250.0
    assert ev(" or ".join(["last(/h/zero)=1"] * 200 + ["last(/h/one)=1"]), data) == 1.0
    with pytest.raises(ExpressionError) as e:
        parse("last(/h/one)" + "+1" * 251)
    assert "more than 250 operators" in str(e.value)
    assert e.value.pos == len("last(/h/one)") + 2 * 250  # the 251st '+'


def test_expressions_compare_and_hash_by_text() -> None:
    a, b = parse("last(/h/k)>1"), parse("last(/h/k)>1")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != parse("last(/h/k)>2")
    assert str(a) == "last(/h/k)>1"


def test_errors_name_the_call_as_written(data: MemorySource) -> None:
    assert unknown('count( /h/status , #5 , "gt" , "a" )', data).startswith('count( /h/status , #5 , "gt" , "a" ):')


def test_macro_with_a_comma_in_its_context_as_a_parameter(data: MemorySource) -> None:
    (f,) = parse('count(/h/ten,#2,"gt",{$T:"a,b"})').functions
    assert f.params == ("#2", "gt", '{$T:"a,b"}')
    assert ev('count(/h/ten,#2,"gt",{$T:"a,b"})', data, {'{$T:"a,b"}': "5"}) == 1.0


def test_time_shift_anchors_follow_the_time_zone() -> None:
    from datetime import timedelta, timezone

    from vigil.server.store.base import Trend

    src = MemorySource()
    cpu = src.add("h", "cpu", 0, [])
    now = 1_710_339_930  # 2024-03-13 14:25:30 UTC, 16:25:30 at UTC+2
    day_utc = 1_710_288_000  # 2024-03-13 00:00 UTC
    src.trend_rows[cpu] = [Trend(day_utc - 7200, 1, 1.0, 1.0, 1.0),  # 22:00 UTC the day before: 00:00 at UTC+2
                           Trend(day_utc - 10800, 1, 5.0, 5.0, 5.0)]  # 21:00 UTC: the day before at UTC+2 too
    e = parse("trendmin(/h/cpu,1d:now/d)")
    # UTC: yesterday is 12 March 00:00-24:00 UTC and holds both: min 1
    assert evaluate(e, src, now, {}) == 1.0
    # UTC+2: yesterday is 12 March 00:00-24:00 local, 11 March 22:00 - 12 March 22:00 UTC: the 21:00 UTC hour only
    assert evaluate(e, src, now, {}, tz=timezone(timedelta(hours=2))) == 5.0
    assert evaluate(parse("trendmin(/h/cpu,1d:now/d+1d)"), src, now, {}, tz=timezone(timedelta(hours=2))) == 1.0


def test_host_macro_as_host_can_be_renamed_to_the_real_host(data: MemorySource) -> None:
    e = parse("last(/{HOST.HOST}/ten)>5")
    assert e.item_refs() == {("{HOST.HOST}", "ten")}
    assert "no item 'ten' on host '{HOST.HOST}'" in unknown("last(/{HOST.HOST}/ten)>5", data)
    assert ev(e.rename_host("{HOST.HOST}", "h"), data) == 1.0
