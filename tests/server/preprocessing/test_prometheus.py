"""Prometheus text exposition, the Prometheus pattern and Prometheus to JSON steps."""

from __future__ import annotations

import json
import math

import pytest
from vigil.server.preprocessing.prometheus import (
    PatternError,
    PrometheusError,
    compile_pattern,
    parse,
    pattern_value,
    to_json,
)

EXPOSITION = r"""# A comment that is neither HELP nor TYPE
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
http_requests_total{method="get",code="200",} 12.5

# Escaping in label values, and a HELP with an escaped newline.
# HELP msdos_file_access_time_seconds File access time.\nSecond line.
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
# Minimalistic line:
metric_without_timestamp_and_labels 12.47
# TYPE node_load1 gauge
node_load1 NaN
node_load5 +Inf
node_load15 -Inf
# HELP rpc_duration_seconds A histogram of RPC durations.
# TYPE rpc_duration_seconds histogram
rpc_duration_seconds_bucket{le="0.05"} 24054
rpc_duration_seconds_bucket{le="+Inf"} 144320
rpc_duration_seconds_sum 53423
rpc_duration_seconds_count 144320
cpu_seconds{cpu="0",mode="idle"} 100
cpu_seconds{cpu="0",mode="user"} 20
cpu_seconds{cpu="1",mode="idle"} 110
cpu_seconds{cpu="1",mode="user"} NaN
"""


def test_parse_samples_labels_timestamps_and_families():
    samples = parse(EXPOSITION)
    assert len(samples) == 16
    first = samples[0]
    assert first.name == "http_requests_total"
    assert first.labels == (("method", "post"), ("code", "200"))
    assert first.value == 1027 and first.timestamp == 1395066363000
    assert first.type == "counter" and first.help == "The total number of HTTP requests."
    assert samples[1].value_text == "3"
    assert samples[2].labels[-1] == ("code", "200") and samples[2].timestamp is None  # trailing comma
    dos = samples[3]
    assert dos.label("path") == "C:\\DIR\\FILE.TXT"
    assert dos.label("error") == 'Cannot find file:\n"FILE.TXT"'
    assert dos.help == "File access time.\nSecond line."
    assert dos.value == 1.458255915e9
    assert samples[4].type is None and samples[4].help is None
    assert math.isnan(samples[5].value) and samples[6].value == math.inf and samples[7].value == -math.inf
    bucket = samples[8]
    assert bucket.type == "histogram" and bucket.help == "A histogram of RPC durations."  # by family
    assert samples[11].name == "rpc_duration_seconds_count" and samples[11].type == "histogram"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metric 1\n9bad 2\n", "line 2: expected a metric name"),
        ('m{a="1" 2\n', "line 1: expected ',' or '}'"),
        ('m{a=1} 2\n', "line 1: expected '\"'"),
        ('m{a="1} 2\n', "line 1: unterminated label value"),
        ("m\n", "line 1: expected a value"),
        ("m one\n", "line 1: 'one' is not a number"),
        ("m 1 soon\n", "line 1: 'soon' is not a timestamp"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str):
    with pytest.raises(ValueError, match=message.replace("{", "\\{").replace("}", "\\}")):
        parse(text)


@pytest.mark.parametrize(
    ("pattern", "req", "argument", "want"),
    [
        ("metric_without_timestamp_and_labels", "value", "", "12.47"),
        ('http_requests_total{method="post",code="200"}', "value", "", "1027"),
        ('{__name__="http_requests_total",code="400"}', "value", "", "3"),
        ('http_requests_total{method!="post"}', "value", "", "12.5"),
        ('http_requests_total{code=~"4.."}', "value", "", "3"),
        ('http_requests_total{code!~"2.*"}', "label", "code", "400"),
        ('{__name__=~"http_.*"} == 3', "label", "method", "post"),
        ("http_requests_total == 12.5", "label", "method", "get"),
        ("http_requests_total", "function", "sum", "1042.5"),
        ("http_requests_total", "function", "min", "3"),
        ("http_requests_total", "function", "max", "1027"),
        ("http_requests_total", "function", "avg", "347.5"),
        ("http_requests_total", "function", "count", "3"),
        ("http_requests_total", "sum", "", "1042.5"),  # the function name as the request
        ('cpu_seconds{mode="idle"}', "function", "sum", "210"),
        ('cpu_seconds{mode="user"}', "function", "sum", "20"),  # NaN skipped
        ('cpu_seconds{mode="user"}', "function", "count", "1"),
        ("node_load1", "function", "count", "0"),
        ("node_load5", "value", "", "+Inf"),
        ("node_load1 == NaN", "value", "", "NaN"),
        ('rpc_duration_seconds_bucket{le="+Inf"}', "value", "", "144320"),
        ('msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT"}', "value", "", "1.458255915e9"),
        ('{error=~"Cannot find file:\\n.*"}', "label", "__name__", "msdos_file_access_time_seconds"),
    ],
)
def test_pattern_value(pattern: str, req: str, argument: str, want: str):
    assert pattern_value(EXPOSITION, pattern, req, argument) == want


@pytest.mark.parametrize(
    ("pattern", "req", "argument", "message"),
    [
        ("nothing_here", "value", "", "no data matches the pattern"),
        ("http_requests_total", "value", "", "3 metrics match the pattern, only one may when the result is value"),
        ("http_requests_total", "label", "code", "3 metrics match"),
        ("metric_without_timestamp_and_labels", "label", "code", "the matching metric has no label 'code'"),
        ("node_load1", "function", "avg", "avg: no data (at least one value that is not NaN is required)"),
        ("node_load1", "function", "median", "unknown function 'median'"),
        ("node_load1", "table", "", "unknown request 'table'"),
        ("node_load1", "label", "", "the label request needs a label name"),
    ],
)
def test_pattern_value_errors(pattern: str, req: str, argument: str, message: str):
    with pytest.raises(PrometheusError, match=message.replace("(", "\\(").replace(")", "\\)")):
        pattern_value(EXPOSITION, pattern, req, argument)


@pytest.mark.parametrize(
    ("pattern", "fragment", "pos"),
    [
        ("", "the Prometheus pattern is empty", 0),
        ("{}", "expected a metric name or '{'", 0),
        ('m{9a="x"}', "expected a label name", 2),
        ('m{a~"x"}', "expected =, !=, =~ or !~ after label 'a'", 3),
        ("m{a=x}", "expected a double-quoted value for label 'a'", 4),
        ('m{a=~"("}', "bad regular expression '(' for label 'a'", 8),
        ('m{a="x"', "missing '}'", 7),
        ('m{a="x" b="y"}', "expected ',' or '}'", 8),
        ("m == one", "'one' after '==' is not a number", 4),
        ("m > 1", "unexpected '>'", 2),
    ],
)
def test_bad_patterns_name_the_position(pattern: str, fragment: str, pos: int):
    with pytest.raises(PatternError) as e:
        compile_pattern(pattern)
    assert fragment in str(e.value)
    assert e.value.pos == pos


def test_regex_matchers_are_anchored_like_promql():
    with pytest.raises(PrometheusError, match="no data matches"):  # "0" is not searched for inside "200"
        pattern_value(EXPOSITION, 'http_requests_total{code=~"0"}', "function", "count")
    assert pattern_value(EXPOSITION, 'http_requests_total{code=~".*0"}', "function", "count") == "3"
    # a label that is absent is the empty string
    assert pattern_value(EXPOSITION, 'cpu_seconds{zone=""}', "function", "count") == "3"  # 4, one NaN


def test_unusual_spacing_takes_the_careful_parser_with_the_same_result():
    a = parse('m{a="1",b="x\\"}y"} 2 17\n')[0]
    b = parse('m { a = "1" , b = "x\\"}y" , } 2 17\n')[0]
    assert a.labels == b.labels == (("a", "1"), ("b", 'x"}y'))
    assert (a.value, a.timestamp) == (b.value, b.timestamp) == (2.0, 17)


def test_parsed_texts_are_not_shared_mutable_state():
    text = "a 1\nb 2\n"
    first = parse(text)
    first.clear()
    assert [s.name for s in parse(text)] == ["a", "b"]


def test_indexed_lookup_agrees_with_a_scan():
    text = "\n".join(f'if_in{{ifName="eth{i}",host="h{i % 3}"}} {i}' for i in range(50)) + '\nif_in{host="h1"} 99\n'
    for i in (0, 7, 49):
        assert pattern_value(text, f'if_in{{ifName="eth{i}"}}', "value", "") == str(i)
        assert pattern_value(text, f'{{__name__=~"if_in",ifName=~"eth{i}"}}', "value", "") == str(i)
    assert pattern_value(text, 'if_in{host="h1"}', "function", "count") == "18"
    assert pattern_value(text, 'if_in{ifName=""}', "value", "") == "99"  # a missing label is ""
    assert pattern_value(text, 'if_in{host="h1",ifName!~"eth.*"}', "value", "") == "99"


def test_exemplars_are_ignored():
    text = 'rpc_count_total{path="/a"} 17 1520879607789 # {trace_id="KOO5S4vxi0o"} 0.67\n'
    assert pattern_value(text, "rpc_count_total", "value", "") == "17"


def test_bad_data_is_a_prometheus_error():
    with pytest.raises(PrometheusError, match="cannot parse the Prometheus data: line 1"):
        pattern_value("{oops} 1", "m", "value", "")


def test_to_json_all_and_filtered():
    rows = json.loads(to_json(EXPOSITION))
    assert len(rows) == 16
    assert rows[0] == {
        "name": "http_requests_total",
        "help": "The total number of HTTP requests.",
        "type": "counter",
        "labels": {"method": "post", "code": "200"},
        "value": "1027",
        "line_raw": 'http_requests_total{method="post",code="200"} 1027 1395066363000',
    }
    assert rows[4] == {"name": "metric_without_timestamp_and_labels", "value": "12.47",
                       "line_raw": "metric_without_timestamp_and_labels 12.47"}
    idle = json.loads(to_json(EXPOSITION, 'cpu_seconds{mode="idle"}'))
    assert [(r["labels"]["cpu"], r["value"]) for r in idle] == [("0", "100"), ("1", "110")]
    assert to_json(EXPOSITION, "absent_metric") == "[]"
