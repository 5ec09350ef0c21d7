"""XML XPath (lxml when installed, else the ElementTree subset) and XML to JSON."""

from __future__ import annotations

import json

import pytest
from vigil.server.preprocessing.xmlpath import HAVE_LXML, XMLError, XPathError, xml_to_json, xpath

DOC = """<?xml version="1.0"?>
<zabbix_export>
  <hosts>
    <host id="10084" status="up"><name>web01</name><load>0.5</load></host>
    <host id="10085" status="down"><name>db01</name><load>2.25</load></host>
  </hosts>
  <empty/>
</zabbix_export>"""


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("/zabbix_export/hosts/host[1]/name/text()", "web01"),
        ("/zabbix_export/hosts/host[last()]/name/text()", "db01"),
        ("/zabbix_export/hosts/host[@status='down']/load/text()", "2.25"),
        ('/zabbix_export/hosts/host[name="web01"]/@id', "10084"),
        ("//host/@id", "1008410085"),
        ("//name", "<name>web01</name><name>db01</name>"),
        ("/zabbix_export/hosts/host[2]/name", "<name>db01</name>"),
        ("/zabbix_export/empty", "<empty />" if not HAVE_LXML else "<empty/>"),
        ("/zabbix_export/nothing", ""),
        ("count(//host)", "2"),
        ("count(//host[@status='up'])", "1"),
        ("sum(//load)", "2.75"),
        ("number(//host[2]/load)", "2.25"),
        ("string(//host[1])", "web010.5"),
        ("string(/zabbix_export/nothing)", ""),
    ],
)
def test_xpath(expr: str, want: str):
    assert xpath(expr, DOC) == want


def test_text_nodes_of_mixed_content():
    assert xpath("/p/text()", "<p>one <b>two</b> three</p>") == "one  three"


def test_bad_xml():
    with pytest.raises(XMLError, match="cannot parse the value as XML"):
        xpath("/a", "<a><b></a>")
    with pytest.raises(XMLError, match="cannot parse the value as XML"):
        xpath("/a", "plain text")


def test_empty_expression():
    with pytest.raises(XPathError, match="empty"):
        xpath("  ", DOC)


@pytest.mark.skipif(HAVE_LXML, reason="the ElementTree subset is used only without lxml")
@pytest.mark.parametrize(
    "expr",
    [
        "contains(//name, 'web')",
        "//host[@id='10084' and @status='up']",
        "//host/following-sibling::host",
        "//name | //load",
        "//host[load > 1]",
        "hosts/host",
    ],
)
def test_outside_the_subset_is_refused_clearly(expr: str):
    with pytest.raises(XPathError, match="unsupported XPath"):
        xpath(expr, DOC)


@pytest.mark.skipif(not HAVE_LXML, reason="needs lxml")
def test_full_xpath_with_lxml():  # pragma: no cover - depends on the environment
    assert xpath("//host[load > 1]/name/text()", DOC) == "db01"
    assert xpath("concat(//host[1]/name, '-', //host[2]/name)", DOC) == "web01-db01"
    assert xpath("count(//host) > 1", DOC) == "true"


def test_xml_to_json():
    out = json.loads(xml_to_json(DOC))
    hosts = out["zabbix_export"]["hosts"]["host"]
    assert hosts[0] == {"@id": "10084", "@status": "up", "name": "web01", "load": "0.5"}
    assert hosts[1]["name"] == "db01"
    assert out["zabbix_export"]["empty"] is None
    assert json.loads(xml_to_json('<a x="1">text</a>')) == {"a": {"@x": "1", "#text": "text"}}
    assert json.loads(xml_to_json("<a><b>1</b></a>")) == {"a": {"b": "1"}}


def test_xml_to_json_namespaces_and_cdata():
    doc = '<r xmlns="urn:x" xmlns:y="urn:y"><y:a y:k="1"><![CDATA[<raw>]]></y:a><a>2</a></r>'
    assert json.loads(xml_to_json(doc)) == {"r": {"a": [{"@k": "1", "#text": "<raw>"}, "2"]}}


def test_xml_to_json_absurd_nesting():
    with pytest.raises(XMLError, match="nested too deeply"):
        xml_to_json("<a>" * 5000 + "</a>" * 5000)


def test_xml_to_json_bad_input():
    with pytest.raises(XMLError):
        xml_to_json("<a>")
