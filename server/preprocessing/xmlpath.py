"""XML steps: XML XPath, check for error in XML, XML to JSON.

    xpath(expression, text) -> str
    xml_to_json(text) -> str

With lxml installed, XPath 1.0 is complete (libxml2, as Zabbix uses). Without it the standard
library's ElementTree answers a subset, and anything else is refused with XPathError saying so:
  - location paths from the root: `/a/b/c`, `//c`, `/a//c`, `*`, `.`, `..`;
  - predicates `[n]`, `[last()]`, `[@attr]`, `[@attr='v']`, `[tag]`, `[tag='text']`;
  - a last step `text()` or `@attr`;
  - the whole expression wrapped in `string(...)`, `number(...)`, `count(...)` or `sum(...)`.
Not in the subset: other functions (contains(), concat(), …), axes (`child::`, `following-sibling::`),
`and`/`or` and comparisons in predicates, unions `|`, arithmetic, namespaces prefixes.

Results follow Zabbix: a node set is the concatenation of its nodes (elements as XML, text and
attribute nodes as their text; an empty set gives ""), numbers without a trailing ".0", booleans
"true"/"false".
"""

from __future__ import annotations

import copy
import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

try:  # pragma: no cover - depends on the environment
    from lxml import etree as _lxml  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _lxml = None

HAVE_LXML = _lxml is not None


class XPathError(ValueError):
    """A bad or unsupported XPath expression."""


class XMLError(ValueError):
    """A value that is not well-formed XML."""


def _number(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == int(x) and abs(x) < 2**63:
        return str(int(x))
    return repr(x)


def parse_xml(text: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise XMLError(f"cannot parse the value as XML: {e}") from None


def _dump(el: ET.Element) -> str:
    c = copy.copy(el)
    c.tail = None
    return ET.tostring(c, encoding="unicode")


def _lxml_xpath(expression: str, text: str) -> str:  # pragma: no cover - needs lxml
    assert _lxml is not None
    try:
        parser = _lxml.XMLParser(resolve_entities=False, no_network=True)
        doc = _lxml.fromstring(text.encode(), parser)
    except _lxml.XMLSyntaxError as e:
        raise XMLError(f"cannot parse the value as XML: {e}") from None
    try:
        result = doc.xpath(expression)
    except _lxml.XPathError as e:
        raise XPathError(f"invalid XPath {expression!r}: {e}") from None
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, float):
        return _number(result)
    if isinstance(result, str):
        return str(result)
    parts = []
    for node in result:
        if isinstance(node, str):
            parts.append(str(node))
        else:
            parts.append(_lxml.tostring(node, encoding="unicode", with_tail=False))
    return "".join(parts)


_FUNC = re.compile(r"\s*(string|number|count|sum)\s*\((.*)\)\s*", re.S)
_UNSUPPORTED = re.compile(r"::|\||\band\b|\bor\b|[<>]|!=|\b(?!last\(\)|text\(\))[a-z-]+\(")


def _etree_nodes(path: str, root: ET.Element) -> list[Any]:
    p = path.strip()
    if not p.startswith("/"):
        raise XPathError(f"unsupported XPath {path!r}: without lxml only paths from the root ('/…' or '//…') work")
    if _UNSUPPORTED.search(p):
        raise XPathError(f"unsupported XPath {path!r}: without lxml only simple location paths with [n], [@a='v'], "
                         "[tag='v'] predicates and string()/number()/count()/sum() work; install lxml for full XPath")
    last: tuple[str, str] | None = None
    m = re.search(r"/(text\(\)|@[\w.:-]+)$", p)
    if m:
        last = ("text", "") if m.group(1) == "text()" else ("attr", m.group(1)[1:])
        p = p[: m.start()] or "/"
        if p.endswith("/") and p != "/":
            p = p[:-1] + "/*" if p.endswith("//") else p[:-1]
    wrapper = ET.Element("__vigil_document__")
    wrapper.append(root)
    try:
        if p == "/":
            nodes: list[ET.Element] = [wrapper]
        else:
            nodes = wrapper.findall("." + p)
    except (SyntaxError, KeyError) as e:
        raise XPathError(f"invalid XPath {path!r}: {e}") from None
    if last is None:
        return nodes
    if last[0] == "text":  # every text node directly under the element: its text and its children's tails
        texts = ["".join([n.text or ""] + [c.tail or "" for c in n]) for n in nodes]
        return [t for t in texts if t]
    return [n.get(last[1]) for n in nodes if n.get(last[1]) is not None]


def _string_value(node: Any) -> str:
    if isinstance(node, str):
        return node
    return "".join(node.itertext())


def _etree_xpath(expression: str, text: str) -> str:
    root = parse_xml(text)
    f = _FUNC.fullmatch(expression)
    if f:
        nodes = _etree_nodes(f.group(2), root)
        fn = f.group(1)
        if fn == "count":
            return str(len(nodes))
        if fn == "string":
            return _string_value(nodes[0]) if nodes else ""
        values = []
        for n in nodes if fn == "sum" else nodes[:1]:
            try:
                values.append(float(_string_value(n).strip()))
            except ValueError:
                values.append(math.nan)
        if fn == "number":
            return _number(values[0]) if values else "NaN"
        return _number(math.fsum(values))
    nodes = _etree_nodes(expression, root)
    return "".join(n if isinstance(n, str) else _dump(n) for n in nodes)


def xpath(expression: str, text: str) -> str:
    """The XML XPath step; raises XPathError (expression) or XMLError (value)."""
    if not expression.strip():
        raise XPathError("the XPath expression is empty")
    if HAVE_LXML:  # pragma: no cover
        return _lxml_xpath(expression, text)
    return _etree_xpath(expression, text)


# --- XML to JSON --------------------------------------------------------------------------------------


def _local(name: str) -> str:
    return name.split("}", 1)[-1]  # ElementTree spells a namespaced name "{uri}name"


def _to_json(el: ET.Element) -> Any:
    out: dict[str, Any] = {}
    for k, v in el.attrib.items():
        out["@" + _local(k)] = v
    for child in el:
        if not isinstance(child.tag, str):  # comments and processing instructions
            continue
        tag = _local(child.tag)
        value = _to_json(child)
        if tag in out:
            prev = out[tag]
            if isinstance(prev, _Repeated):
                prev.append(value)
            else:
                out[tag] = _Repeated([prev, value])
        else:
            out[tag] = value
    text = (el.text or "").strip()
    if not out:
        return text if text else None
    if text:
        out["#text"] = text
    return out


class _Repeated(list[Any]):  # a list made from repeated elements (never confused with a value)
    pass


def xml_to_json(text: str) -> str:
    """Zabbix's XML to JSON: attributes as "@name", text beside attributes or children as "#text",
    repeated elements as arrays, an empty element as null."""
    root = parse_xml(text)
    try:
        return json.dumps({_local(root.tag): _to_json(root)}, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise XMLError("cannot convert XML to JSON: it is nested too deeply") from None
