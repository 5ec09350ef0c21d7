"""Each preprocessing step with hand-computed results, custom on fail, state across values."""

from __future__ import annotations

import json

import pytest
from vigil.server.config.tables import ValueType
from vigil.server.preprocessing import ItemState, Result, Step, StepError, run, step_from_mapping, validate


def one(step: Step, value: str | int | float, clock: float = 1000.0, **kw: object) -> Result:
    return run([step], value, clock, ItemState(), **kw)  # type: ignore[arg-type]


def ok(step: Step, value: str | int | float) -> str | int | float:
    r = one(step, value)
    assert r.error is None, r.error
    assert not r.discarded
    assert r.value is not None
    return r.value


def err(step: Step, value: str | int | float) -> str:
    r = one(step, value)
    assert r.error is not None, f"expected an error, got {r}"
    return r.error


# --- 1 multiplier ---------------------------------------------------------------------------------------


def test_multiplier_integer_stays_integer():
    assert ok(Step(1, "8"), "125") == 1000
    assert isinstance(ok(Step(1, "8"), "125"), int)


def test_multiplier_float():
    assert ok(Step(1, "0.5"), "3") == 1.5
    assert ok(Step(1, "2"), " 1.25\n") == 2.5
    assert ok(Step(1, "1e3"), "-2") == -2000.0
    assert ok(Step(1, "3"), ' "+7"\r\n') == 21  # quotes, a plus sign and CR/LF are dropped as in Zabbix


def test_multiplier_on_text_fails_quoting_the_value():
    e = err(Step(1, "8"), "abc")
    assert e == 'step 1 (Custom multiplier): cannot apply multiplier "8" to value "abc": it is not a number'


def test_multiplier_bad_parameter():
    e = err(Step(1, "eight"), "1")
    assert e.startswith("step 1 (Custom multiplier): ")
    assert '"eight" is not a number' in e
    with pytest.raises(StepError, match="multiplier"):
        Step(1, "eight").validate()


# --- 2, 3, 4 trims ----------------------------------------------------------------------------------------


def test_trims():
    assert ok(Step(2, " x"), "  abc xx ") == "  abc"
    assert ok(Step(3, " a"), "  abc  ") == "bc  "
    assert ok(Step(4, '"'), '"quoted"') == "quoted"
    assert ok(Step(4, " \n"), 42) == "42"


def test_trim_needs_characters():
    assert "characters to trim" in err(Step(4, ""), "x")


# --- 5 regular expression ---------------------------------------------------------------------------------


def test_regex_output_template():
    step = Step(5, r"version (\d+)\.(\d+)" + "\n" + r"\2.\1 (\0)")
    assert ok(step, "agent version 6.4 ok") == "4.6 (version 6.4)"


def test_regex_unmatched_and_absent_groups_are_empty():
    assert ok(Step(5, "a(x)?b\n[\\1][\\5]"), "ab") == "[][]"


def test_regex_no_match_fails():
    e = err(Step(5, "^\\d+$\n\\0"), "abc")
    assert e == 'step 1 (Regular expression): pattern "^\\d+$" does not match value "abc"'


def test_regex_bad_pattern_is_clear():
    e = err(Step(5, "(unclosed\n\\1"), "x")
    assert e.startswith('step 1 (Regular expression): invalid regular expression "(unclosed": ')
    assert "missing )" in e
    with pytest.raises(StepError, match="invalid regular expression"):
        validate([Step(5, "[a-\n\\0")])


# --- 6, 7, 8 conversions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [("true", 1), ("Yes", 1), ("UP", 1), ("running", 1), ("ok", 1), ("false", 0), ("off", 0),
     ("Disabled", 0), ("err", 0), ("0", 0), ("0.0", 0), ("2", 1), ("-1.5", 1), (' "on" ', 1)],
)
def test_boolean_to_decimal(text: str, want: int):
    assert ok(Step(6), text) == want


def test_boolean_to_decimal_refuses_other_words():
    assert 'cannot convert value "maybe" from boolean format' in err(Step(6), "maybe")


def test_octal_and_hex():
    assert ok(Step(7), "755") == 493
    assert ok(Step(7), ' "17"\n') == 15
    assert ok(Step(8), "ff") == 255
    assert ok(Step(8), "1F 2a") == 0x1F2A
    assert ok(Step(8), "FFFFFFFFFFFFFFFF") == 2**64 - 1
    assert "from octal" in err(Step(7), "8")
    assert "from hexadecimal" in err(Step(8), "0xZZ")
    assert "too large" in err(Step(8), "1" + "0" * 16)


# --- 9, 10 simple change and change per second ------------------------------------------------------------


def feed(steps: list[Step], values: list[tuple[float, str | int | float]], **kw: object) -> list[Result]:
    state = ItemState()
    out = []
    for clock, v in values:
        r = run(steps, v, clock, state, **kw)  # type: ignore[arg-type]
        state = r.state
        out.append(r)
    return out


def test_simple_change_first_value_primes_then_differences():
    rs = feed([Step(9)], [(1, "10"), (2, "15"), (3, "15"), (4, "22.5")])
    assert rs[0].discarded
    assert [r.value for r in rs[1:]] == [5, 0, 7.5]
    assert isinstance(rs[1].value, int)


def test_simple_change_negative_is_discarded():
    rs = feed([Step(9)], [(1, "100"), (2, "40"), (3, "50")])
    assert rs[1].discarded and rs[1].error is None
    assert rs[2].value == 10  # from the new, lower value


def test_change_per_second():
    rs = feed([Step(10)], [(100.0, "1000"), (110.0, "1500"), (130.5, "2320")])
    assert rs[0].discarded
    assert rs[1].value == 50.0
    assert rs[2].value == pytest.approx(820 / 20.5)


def test_change_per_second_counter_wrap_discards_one_value():
    wrap = 2**32
    rs = feed([Step(10)], [(0, str(wrap - 100)), (10, str(wrap - 50)), (20, "30"), (30, "130")])
    assert rs[1].value == 5.0
    assert rs[2].discarded  # Zabbix does not unwrap: a lower value is dropped
    assert rs[3].value == 10.0  # and the next rate starts from the wrapped value


def test_change_per_second_needs_a_later_clock():
    rs = feed([Step(10)], [(50, "1"), (50, "5"), (40, "9"), (60, "19")])
    assert rs[1].discarded and rs[2].discarded
    assert rs[3].value == 0.5  # (19 - 9) / (60 - 40)


def test_change_per_second_on_text_fails_and_starts_afresh():
    rs = feed([Step(10)], [(0, "10"), (10, "n/a"), (20, "30"), (30, "40")])
    assert rs[1].error == 'step 1 (Change per second): cannot convert value "n/a" to a number'
    assert rs[2].discarded  # Zabbix drops a failed step's history: this value primes it again
    assert rs[3].value == 1.0


def test_change_per_second_failure_with_discard_keeps_history():
    rs = feed([Step(10, error_handler=1)], [(0, "10"), (10, "n/a"), (20, "30")])
    assert rs[1].discarded
    assert rs[2].value == 1.0


def test_change_per_second_then_multiplier_bits():
    rs = feed([Step(10), Step(1, "8")], [(0, "1000"), (2, "1250")])
    assert rs[1].value == 1000.0


def test_run_does_not_mutate_the_given_state():
    s0 = ItemState()
    r1 = run([Step(9)], "1", 1, s0)
    r2 = run([Step(9)], "4", 2, r1.state)
    assert r2.value == 3
    again = run([Step(9)], "4", 2, r1.state)  # the same old state gives the same answer
    assert again.value == 3
    assert s0.previous == {}


def test_history_resets_when_the_steps_change():
    r1 = run([Step(9)], "1", 1, ItemState())
    r2 = run([Step(1, "2"), Step(9)], "5", 2, r1.state)
    assert r2.discarded  # a new pipeline: the first value only primes it


# --- 11 XML XPath, 17 check for error in XML, 27 XML to JSON ------------------------------------------------

XML = '<root><a id="1">x</a><a id="2">y<b>z</b></a><n>2</n><n>3.5</n></root>'


def test_xpath_steps():
    assert ok(Step(11, "/root/a[@id='2']/b/text()"), XML) == "z"
    assert ok(Step(11, "/root/a[1]"), XML) == '<a id="1">x</a>'
    assert ok(Step(11, "count(//a)"), XML) == "2"
    assert ok(Step(11, "sum(/root/n)"), XML) == "5.5"
    assert ok(Step(11, "string(/root/a[2])"), XML) == "yz"
    assert ok(Step(11, "/root/missing"), XML) == ""  # an empty node set, as libxml2 gives


def test_xpath_on_bad_xml():
    e = err(Step(11, "/root"), "<root><a></root>")
    assert e.startswith("step 1 (XML XPath): cannot parse the value as XML: ")
    assert "mismatch" in e  # expat: "mismatched tag", libxml2: "Opening and ending tag mismatch"


def test_check_for_error_in_xml():
    assert ok(Step(17, "/r/error"), "<r><data>1</data></r>") == "<r><data>1</data></r>"
    assert ok(Step(17, "/r/error"), "not xml") == "not xml"  # Zabbix lets a value that is not XML pass
    assert ok(Step(17, "/r/error/text()"), "<r><error>  </error></r>") == "<r><error>  </error></r>"
    assert err(Step(17, "/r/error/text()"), "<r><error>disk full</error></r>") == \
        "step 1 (Check for error in XML): disk full"


def test_xml_to_json():
    out = ok(Step(27), '<r a="1"><x>1</x><x>2</x><y/><z k="v">t</z></r>')
    assert json.loads(str(out)) == {"r": {"@a": "1", "x": ["1", "2"], "y": None, "z": {"@k": "v", "#text": "t"}}}


# --- 12 JSONPath, 16 check for error in JSON --------------------------------------------------------------


def test_jsonpath_step():
    assert ok(Step(12, "$.a.b"), '{"a": {"b": "x"}}') == "x"
    assert ok(Step(12, "$.a[*].n"), '{"a": [{"n": 1}, {"n": 2}]}') == "[1,2]"


def test_jsonpath_no_match_names_the_path():
    assert err(Step(12, "$.a.b"), '{"a": {}}') == "step 1 (JSONPath): no data matches $.a.b"
    r = run([Step(1, "1"), Step(12, "$.a.b")], '{"a": 1}', 0)
    assert r.error == 'step 1 (Custom multiplier): cannot apply multiplier "1" to value "{"a": 1}": it is not a number'


def test_jsonpath_bad_path_and_bad_json():
    e = err(Step(12, "$.a[?(@.x ==)]"), "{}")
    assert e.startswith("step 1 (JSONPath): invalid JSONPath")
    assert e.endswith("at position 12")
    assert err(Step(12, "$.a"), "{not json").startswith("step 1 (JSONPath): cannot parse the value as JSON")
    with pytest.raises(StepError, match=r"step 2 \(JSONPath\): invalid JSONPath 'a.b': a path starts with '\$'"):
        validate([Step(4, " "), Step(12, "a.b")])


def test_jsonpath_on_absurdly_deep_json_fails_cleanly():
    deep = "[" * 100000 + "]" * 100000
    assert err(Step(12, "$[0]"), deep) == "step 1 (JSONPath): cannot parse the value as JSON: it is nested too deeply"
    assert ok(Step(16, "$.error"), deep) == deep


def test_check_for_error_in_json():
    step = Step(16, "$.error.message")
    assert ok(step, '{"data": 1}') == '{"data": 1}'
    assert ok(step, "not json at all") == "not json at all"
    assert ok(step, '{"error": {"message": ""}}') == '{"error": {"message": ""}}'
    assert err(step, '{"error": {"message": "token expired"}}') == "step 1 (Check for error in JSON): token expired"


# --- 13, 14, 15 validation --------------------------------------------------------------------------------


def test_in_range():
    assert ok(Step(13, "0\n100"), "55") == "55"
    assert ok(Step(13, "\n100"), "-5") == "-5"
    assert ok(Step(13, "-1.5\n"), 1e9) == 1e9
    want = 'step 1 (In range): value "101" is out of range: it must be between 0 and 100'
    assert err(Step(13, "0\n100"), "101") == want
    assert "at least 10" in err(Step(13, "10\n"), "9.99")
    assert 'cannot convert value "hot" to a number' in err(Step(13, "0\n1"), "hot")
    assert "needs a minimum" in err(Step(13, "\n"), "1")
    assert "greater than the maximum" in err(Step(13, "5\n1"), "1")


def test_matches_and_does_not_match():
    assert ok(Step(14, "^[0-9]+$"), "123") == "123"
    assert err(Step(14, "^[0-9]+$"), "12a") == \
        'step 1 (Matches regular expression): value "12a" does not match regular expression "^[0-9]+$"'
    assert ok(Step(15, "error"), "fine") == "fine"
    assert "matches regular expression" in err(Step(15, "error"), "an error here")


# --- 18 check for error using regex -------------------------------------------------------------------------


def test_check_for_error_using_regex():
    step = Step(18, r"^ERR (\d+): (.*)$" + "\n" + r"code \1: \2")
    assert ok(step, "OK 42") == "OK 42"
    assert err(step, "ERR 7: no route") == "step 1 (Check for error using regular expression): code 7: no route"
    assert ok(Step(18, "^ERR\n"), "ERR x") == "ERR x"  # an empty output is no error, as in Zabbix


# --- 19, 20 discard unchanged -------------------------------------------------------------------------------


def test_discard_unchanged():
    rs = feed([Step(19)], [(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "a")])
    assert [r.discarded for r in rs] == [False, True, False, False, True]


def test_discard_unchanged_compares_numbers_as_numbers():
    rs = feed([Step(1, "1"), Step(19)], [(1, "5"), (2, " 5"), (3, "5.0")])
    assert [r.discarded for r in rs] == [False, True, True]


def test_discard_unchanged_with_heartbeat():
    rs = feed([Step(20, "1m")], [(0, "1"), (30, "1"), (59, "1"), (60, "1"), (61, "1"), (70, "2"), (80, "2")])
    assert [r.discarded for r in rs] == [False, True, True, False, True, False, True]


def test_heartbeat_bad_duration():
    assert "heartbeat" in err(Step(20, "soon"), "1")
    assert "at least 1 second" in err(Step(20, "0"), "1")


# --- 21 JavaScript ------------------------------------------------------------------------------------------


def test_javascript_is_not_supported_even_with_custom_on_fail():
    r = one(Step(21, "return value * 2;", error_handler=1), "1")
    assert r.error is not None and not r.discarded
    assert r.error.startswith("step 1 (JavaScript): JavaScript preprocessing is not supported by Vigil")
    with pytest.raises(StepError, match="not supported"):
        Step(21, "return 1;").validate()


# --- 22, 23 Prometheus (details in test_prometheus.py) --------------------------------------------------------

PROM = """# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
"""


def test_prometheus_steps():
    assert ok(Step(22, 'http_requests_total{code="200"}\nvalue\n'), PROM) == "1027"
    assert ok(Step(22, "http_requests_total\nfunction\nsum"), PROM) == "1030"
    assert ok(Step(22, 'http_requests_total{code="400"}\nlabel\nmethod'), PROM) == "post"
    rows = json.loads(str(ok(Step(23, '{code=~"4.."}'), PROM)))
    assert [r["labels"]["code"] for r in rows] == ["400"]
    e = err(Step(22, "http_requests_total\nvalue\n"), PROM)
    assert e.startswith("step 1 (Prometheus pattern): 2 metrics match the pattern")
    assert "invalid Prometheus pattern" in err(Step(22, 'x{a="b"\nvalue\n'), PROM)


# --- 24 CSV to JSON ---------------------------------------------------------------------------------------------


CSV = 'Nr,Item name,Key,Qty\n1,active agent item,agent.hostname,33\n"2","passive agent item","agent.version","44"\n' \
      '3,"active,passive agent items",agent.ping,55\n'


def test_csv_with_header():
    rows = json.loads(str(ok(Step(24, ',\n"\n1'), CSV)))
    assert rows[0] == {"Nr": "1", "Item name": "active agent item", "Key": "agent.hostname", "Qty": "33"}
    assert rows[1]["Qty"] == "44"
    assert rows[2]["Item name"] == "active,passive agent items"


def test_csv_without_header_and_other_delimiters():
    rows = json.loads(str(ok(Step(24, ';\n\'\n0'), "a;'b;c'\n'd''e';f\n")))
    assert rows == [{"1": "a", "2": "b;c"}, {"1": "d'e", "2": "f"}]
    rows = json.loads(str(ok(Step(24, '\n"\n1'), "sep=|\nx|y\n1|2\n")))
    assert rows == [{"x": "1", "y": "2"}]
    rows = json.loads(str(ok(Step(24, ';\n"\n1'), "sep=|\nx;y\n1;2\n")))  # the step's delimiter wins
    assert rows == [{"x": "1", "y": "2"}]
    assert json.loads(str(ok(Step(24, ',\n"\n'), "a,b\n"))) == [{"1": "a", "2": "b"}]  # empty flag: no header


def test_csv_row_shorter_and_longer_than_header():
    rows = json.loads(str(ok(Step(24, ',\n"\n1'), "a,b,c\n1\n")))
    assert rows == [{"a": "1", "b": "", "c": ""}]
    assert "data row 2 has 3 columns, more than the 2 of the header" in err(Step(24, ',\n"\n1'), "a,b\n1,2,3\n")
    assert 'column "a" twice' in err(Step(24, ',\n"\n1'), "a,a\n1,2\n")


def test_csv_bad_quoting_and_parameters():
    assert "cannot convert CSV to JSON: line 2" in err(Step(24, ',\n"\n1'), 'a,b\n"1"x,2\n')
    assert "one character" in err(Step(24, ',,\n"\n1'), "a")
    assert "header flag" in err(Step(24, ',\n"\nyes'), "a")


# --- 25 replace, 26 check for not supported -----------------------------------------------------------------


def test_replace():
    assert ok(Step(25, "foo\nbar"), "foo foo") == "bar bar"
    assert ok(Step(25, "\\n\n\\s"), "a\nb") == "a b"
    assert ok(Step(25, "x\n"), "axbx") == "ab"
    assert "search string" in err(Step(25, "\nx"), "a")


def test_check_for_not_supported_value():
    steps = [Step(26, "", 2, "0"), Step(1, "10")]
    assert run(steps, "5", 0).value == 50  # a normal value passes
    assert run(steps, None, 0, error="Cannot connect").value == 0  # set value, then the next steps run
    assert run([Step(26, "", 1)], None, 0, error="Timeout").discarded
    assert run([Step(26, "", 3, "device down")], None, 0, error="Timeout").error == "device down"
    assert run([Step(26)], None, 0, error="Timeout").error == "Timeout"
    assert run([Step(1, "2")], None, 0, error="Timeout").error == "Timeout"  # no such step: the error stands


# --- custom on fail -----------------------------------------------------------------------------------------


def test_error_handler_modes():
    base = dict(type=12, params="$.missing")
    doc = '{"a": 1}'
    assert run([Step(**base)], doc, 0).error == "step 1 (JSONPath): no data matches $.missing"  # type: ignore[arg-type]
    r = run([Step(**base, error_handler=1)], doc, 0)  # type: ignore[arg-type]
    assert r.discarded and r.error is None and r.value is None
    r = run([Step(**base, error_handler=2, error_handler_params="-1"), Step(1, "2")], doc, 0)  # type: ignore[arg-type]
    assert r.value == -2  # the set value goes on through the next steps
    r = run([Step(**base, error_handler=3, error_handler_params="no such field")], doc, 0)  # type: ignore[arg-type]
    assert r.error == "no such field"


def test_set_error_without_a_message_keeps_the_steps_error():
    r = run([Step(12, "$.x", 3, "")], "{}", 0)
    assert r.error == "step 1 (JSONPath): no data matches $.x"


def test_error_handler_applies_to_bad_parameters_as_in_zabbix():
    r = run([Step(5, "(\n\\0", error_handler=2, error_handler_params="fallback")], "x", 0)
    assert r.value == "fallback"


def test_a_failing_later_step_is_numbered():
    steps = [Step(12, "$.v"), Step(4, " "), Step(1, "2")]
    assert run(steps, '{"v": " 21 "}', 0).value == 42
    assert run(steps, '{"v": "n/a"}', 0).error == \
        'step 3 (Custom multiplier): cannot apply multiplier "2" to value "n/a": it is not a number'


def test_discard_stops_the_pipeline_and_state_still_updates():
    steps = [Step(10), Step(1, "8")]
    r1 = run(steps, "100", 0, ItemState())
    assert r1.discarded
    assert r1.state.previous[0].value == 100


# --- value types, validation, mapping ----------------------------------------------------------------------


def test_final_value_type_conversion():
    assert run([Step(1, "0.5")], "5", 0, value_type=ValueType.UNSIGNED).value == 2  # integer part kept
    assert run([Step(1, "2")], "5", 0, value_type=ValueType.FLOAT).value == 10.0
    r = run([Step(4, " ")], " abc ", 0, value_type=ValueType.UNSIGNED)
    assert r.error == 'value "abc" is not suitable for value type "Numeric (unsigned)"'
    assert run([Step(4, " ")], " 7 ", 0, value_type=ValueType.UNSIGNED).value == 7
    assert run([Step(1, "-1")], "5", 0, value_type=ValueType.UNSIGNED).error is not None
    assert run([], "x" * 300, 0, value_type=ValueType.CHAR).value == "x" * 255


def test_numeric_type_hint_of_the_item():
    steps = [Step(10), Step(1, "8")]
    rs = feed(steps, [(0, "0"), (2, "25")], value_type=ValueType.UNSIGNED)
    assert rs[1].value == 96  # 12.5/s is 12 in an unsigned item, then times 8
    rs = feed(steps, [(0, "0"), (2, "25")], value_type=ValueType.FLOAT)
    assert rs[1].value == 100.0
    assert run([Step(1, "2")], "2.7", 0, value_type=ValueType.UNSIGNED).value == 4
    r = run([Step(1, "2")], "5", 0, value_type=ValueType.FLOAT)
    assert r.value == 10.0 and isinstance(r.value, float)
    assert run([Step(13, "0\n10")], " 5 ", 0, value_type=ValueType.UNSIGNED).value == 5  # checked, then stored
    r = run([Step(1, "2")], "abc", 0, value_type=ValueType.UNSIGNED)
    assert r.error == 'step 1 (Custom multiplier): cannot apply multiplier "2" to value "abc": it is not a number'


def test_validate_pipeline():
    validate([Step(26, "", 1), Step(12, "$.a"), Step(10)])
    with pytest.raises(StepError, match=r"step 2 \(Check for not supported value\): it must be the first step"):
        validate([Step(12, "$.a"), Step(26)])
    with pytest.raises(StepError, match="unknown preprocessing step type 99"):
        validate([Step(99)])
    with pytest.raises(StepError, match="error_handler must be"):
        validate([Step(1, "2", error_handler=7)])
    with pytest.raises(StepError, match="needs the error message"):
        validate([Step(1, "2", error_handler=3)])


def test_unknown_type_at_run_time():
    assert run([Step(99, "x")], "1", 0).error == "step 1 (type 99): unknown preprocessing step type 99, expected 1..27"


def test_step_from_mapping():
    s = step_from_mapping({"type": 22, "params": ["up", "value", ""], "error_handler": 2, "error_handler_params": 0})
    assert s == Step(22, "up\nvalue\n", 2, "0")
