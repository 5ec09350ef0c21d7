"""Low-level discovery: discovery rules in the document, and the pure parts of running one.

A rule is an item (flags 1) whose value is a JSON array of objects (or Zabbix's `{"data": [...]}`);
each object is one discovered resource with its LLD macros (`{#FSNAME}`: "/"), more taken from the
object by the rule's `lld_macro_paths`. The rule's filter keeps some rows; for every row kept and
every prototype, an item, trigger or graph is made with the macros substituted (the SQL is in
discovery.py). The document format is in docs/config-format.md ("Discovery rules").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.durations import DurationError, seconds
from vigil.server.config.model import (
    ITEM_FIELDS,
    ConfigError,
    ItemSpec,
    _check_keys,
    _text,
    item_from_doc,
    item_to_doc,
)
from vigil.server.config.tables import ItemType, ValueType

LLD_MACRO = re.compile(r"\{#[A-Z0-9_.]+\}")
OPERATORS = {"matches": 8, "not_matches": 9, "exists": 12, "not_exists": 13}
OPERATOR_LABELS = {v: k for k, v in OPERATORS.items()}
EVALTYPES = {"and_or": 0, "and": 1, "or": 2, "custom": 3}
EVALTYPE_LABELS = {v: k for k, v in EVALTYPES.items()}
DRAWTYPES = {"line": 0, "filled": 1, "bold": 2, "dot": 3, "dashed": 4, "gradient": 5}
DRAWTYPE_LABELS = {v: k for k, v in DRAWTYPES.items()}
GRAPHTYPES = {"normal": 0, "stacked": 1}
GRAPHTYPE_LABELS = {v: k for k, v in GRAPHTYPES.items()}
MAX_ROWS = 10_000  # rows of one discovery value; more is refused (an exporter gone wrong)
SNMP_WALK_TO_JSON = 29  # Zabbix's preprocessing step number

RULE_FIELDS = (ITEM_FIELDS - {"value_type", "units", "history", "trends", "tags"}) | {
    "lifetime", "lld_macro_paths", "filter", "item_prototypes", "trigger_prototypes", "graph_prototypes"}
FILTER_FIELDS = {"evaltype", "formula", "conditions"}
CONDITION_FIELDS = {"macro", "value", "operator", "formulaid"}
GRAPH_FIELDS = {"name", "width", "height", "graphtype", "items"}
GRAPH_ITEM_FIELDS = {"key", "color", "drawtype", "yaxisside", "calc_fnc"}
# The macros the agent's discovery keys give each row (Zabbix 6.0's agent).
AGENT_MACROS = {
    "vfs.fs.discovery": {"{#FSNAME}", "{#FSTYPE}", "{#FSLABEL}", "{#FSDRIVETYPE}", "{#FSOPTIONS}"},
    "vfs.fs.get": {"{#FSNAME}", "{#FSTYPE}", "{#FSLABEL}", "{#FSDRIVETYPE}", "{#FSOPTIONS}"},
    "net.if.discovery": {"{#IFNAME}"},
    "vfs.dev.discovery": {"{#DEVNAME}", "{#DEVTYPE}"},
    "system.cpu.discovery": {"{#CPU.NUMBER}", "{#CPU.STATUS}"},
}


@dataclass
class Condition:
    macro: str
    value: str = ""
    operator: int = 8  # OPERATORS
    formulaid: str = ""


@dataclass
class LldFilter:
    evaltype: int = 0  # EVALTYPES
    formula: str = ""
    conditions: list[Condition] = field(default_factory=list)


@dataclass
class GraphItem:
    key: str
    color: str = "009600"
    drawtype: int = 0
    yaxisside: int = 0
    calc_fnc: int = 2


@dataclass
class GraphSpec:
    name: str
    width: int = 900
    height: int = 200
    graphtype: int = 0
    items: list[GraphItem] = field(default_factory=list)


@dataclass
class DiscoveryRuleSpec:
    rule: ItemSpec  # key, name, type, delay, poll fields (snmp_oid, master_item, preprocessing...)
    lifetime: str = "30d"
    macro_paths: dict[str, str] = field(default_factory=dict)
    filter: LldFilter = field(default_factory=LldFilter)
    item_prototypes: list[ItemSpec] = field(default_factory=list)
    trigger_prototypes: list[Any] = field(default_factory=list)  # TriggerSpec
    graph_prototypes: list[GraphSpec] = field(default_factory=list)


# --- the document -----------------------------------------------------------------------------------


def rules_from_doc(d: dict[str, Any], where: str) -> list[DiscoveryRuleSpec]:
    v = d.get("discovery_rules", [])
    if not isinstance(v, list):
        raise ConfigError(f"{where}.discovery_rules: expected a list")
    out = [rule_from_doc(x, f"{where}.discovery_rules[{i}]") for i, x in enumerate(v)]
    item_keys = {it["key"] for it in d.get("items") or [] if isinstance(it, dict) and "key" in it}
    seen: dict[str, int] = {}
    for i, r in enumerate(out):
        w = f"{where}.discovery_rules[{i}].key"
        if r.rule.key in seen:
            raise ConfigError(f"{w}: {r.rule.key!r} appears twice (also discovery_rules[{seen[r.rule.key]}])")
        if r.rule.key in item_keys:
            raise ConfigError(f"{w}: {r.rule.key!r} is the key of one of the items too")
        seen[r.rule.key] = i
    protos: dict[str, str] = {}
    for i, r in enumerate(out):
        for j, p in enumerate(r.item_prototypes):
            w = f"{where}.discovery_rules[{i}].item_prototypes[{j}].key"
            if p.key in protos or p.key in item_keys or p.key in seen:
                raise ConfigError(f"{w}: {p.key!r} is the key of another item, rule or prototype "
                                  f"{'(' + protos[p.key] + ')' if p.key in protos else ''}".rstrip())
            protos[p.key] = f"discovery_rules[{i}].item_prototypes[{j}]"
    return out


def rule_from_doc(d: Any, where: str) -> DiscoveryRuleSpec:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'key'")
    _check_keys(d, RULE_FIELDS, where)
    base = {k: v for k, v in d.items() if k in ITEM_FIELDS}
    if "delay" not in base and d.get("type", "trapper") not in ("trapper", "dependent"):
        base["delay"] = "1h"
    rule = item_from_doc(base, where)
    rule.value_type = ValueType.TEXT
    lifetime = _text(d, "lifetime", where, "30d", 64)
    if "{$" not in lifetime:
        try:
            seconds(lifetime, f"{where}.lifetime")
        except DurationError as e:
            raise ConfigError(str(e)) from None
    paths = d.get("lld_macro_paths") or {}
    if not isinstance(paths, dict):
        raise ConfigError(f"{where}.lld_macro_paths: expected a mapping of {{#MACRO}}: $.json.path")
    from vigil.server.preprocessing.jsonpath import JSONPathError, compile_path

    for k, p in paths.items():
        if not isinstance(k, str) or not LLD_MACRO.fullmatch(k):
            raise ConfigError(f"{where}.lld_macro_paths: {k!r} is not an LLD macro like {{#NAME}}")
        if not isinstance(p, str):
            raise ConfigError(f"{where}.lld_macro_paths.{k}: expected a JSONPath like $.name")
        try:
            compile_path(p)
        except JSONPathError as e:
            raise ConfigError(f"{where}.lld_macro_paths.{k}: {p!r} is not a JSONPath: {e}") from None
    spec = DiscoveryRuleSpec(rule=rule, lifetime=lifetime, macro_paths={str(k): str(v) for k, v in paths.items()},
                             filter=filter_from_doc(d.get("filter"), f"{where}.filter"))
    known = known_macros(spec)
    protos = d.get("item_prototypes") or []
    if not isinstance(protos, list):
        raise ConfigError(f"{where}.item_prototypes: expected a list")
    for j, p in enumerate(protos):
        w = f"{where}.item_prototypes[{j}]"
        it = item_from_doc(p, w)
        check_prototype_text(it.key, known, f"{w}.key", need=True)
        if it.type == ItemType.SNMP:
            check_prototype_text(it.poll.snmp_oid, known, f"{w}.snmp_oid")
        if it.key in [x.key for x in spec.item_prototypes]:
            raise ConfigError(f"{w}.key: {it.key!r} appears twice")
        spec.item_prototypes.append(it)
    from vigil.server.config.alerting import triggers_from_doc

    tdocs = d.get("trigger_prototypes") or []
    masked = [{**x, **{k: mask_lld(x[k]) for k in ("expression", "recovery_expression") if isinstance(x.get(k), str)}}
              if isinstance(x, dict) else x for x in tdocs] if isinstance(tdocs, list) else tdocs
    try:  # checked with the LLD macros outside item keys masked (the parser knows user macros only)
        spec.trigger_prototypes = triggers_from_doc({"triggers": masked}, where)
    except ConfigError as e:
        raise ConfigError(str(e).replace(f"{where}.triggers", f"{where}.trigger_prototypes", 1)) from None
    for tr, x in zip(spec.trigger_prototypes, tdocs, strict=True):
        tr.expression = str(x.get("expression", tr.expression))
        if tr.recovery_mode == 1:
            tr.recovery_expression = str(x.get("recovery_expression", tr.recovery_expression))
    for j, tr in enumerate(spec.trigger_prototypes):
        check_prototype_text(tr.name, known, f"{where}.trigger_prototypes[{j}].name", need=True)
        check_prototype_text(tr.expression, known, f"{where}.trigger_prototypes[{j}].expression")
    graphs = d.get("graph_prototypes") or []
    if not isinstance(graphs, list):
        raise ConfigError(f"{where}.graph_prototypes: expected a list")
    keys = {x.key for x in spec.item_prototypes}
    for j, g in enumerate(graphs):
        gs = graph_from_doc(g, f"{where}.graph_prototypes[{j}]")
        check_prototype_text(gs.name, known, f"{where}.graph_prototypes[{j}].name", need=True)
        if not any(gi.key in keys for gi in gs.items):
            raise ConfigError(f"{where}.graph_prototypes[{j}].items: a graph prototype needs at least one of the "
                              "rule's item prototypes")
        if gs.name in [x.name for x in spec.graph_prototypes]:
            raise ConfigError(f"{where}.graph_prototypes[{j}].name: {gs.name!r} appears twice")
        spec.graph_prototypes.append(gs)
    return spec


def mask_lld(text: str) -> str:
    """A trigger prototype's expression with its LLD macros outside item keys (`{#IFADMINSTATUS}=1`)
    written as user macros, so the expression parser can check it; those in keys stay."""
    out, depth, quoted = [], 0, False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "[":
            depth += 1
        elif not quoted and ch == "]":
            depth = max(depth - 1, 0)
        elif ch == "{" and depth == 0 and not quoted:
            m = LLD_MACRO.match(text, i)
            if m:
                out.append("{$LLD." + m.group()[2:])
                i = m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def masked_trigger(tr: Any) -> Any:
    import dataclasses

    return dataclasses.replace(tr, expression=mask_lld(tr.expression),
                               recovery_expression=mask_lld(tr.recovery_expression))


def known_macros(spec: DiscoveryRuleSpec) -> set[str] | None:
    """The LLD macros the rule's rows are known to have, or None when the data decides (JSON from a
    trapper, an HTTP agent, a script...)."""
    base: set[str] | None = None
    r = spec.rule
    if r.type == ItemType.SNMP and r.poll.snmp_oid.startswith("discovery["):
        base = {"{#SNMPINDEX}"} | set(LLD_MACRO.findall(r.poll.snmp_oid))
    elif r.type in (ItemType.AGENT, ItemType.AGENT_ACTIVE):
        name = r.key.split("[", 1)[0]
        if name in AGENT_MACROS:
            base = set(AGENT_MACROS[name])
    for s in r.poll.preprocessing:
        if s.type == SNMP_WALK_TO_JSON:
            base = (base or set()) | {"{#SNMPINDEX}"} | set(LLD_MACRO.findall(s.params))
    if base is None:
        return None
    return base | set(spec.macro_paths)


def check_prototype_text(text: str, known: set[str] | None, where: str, need: bool = False) -> None:
    found = LLD_MACRO.findall(text)
    if need and not found:
        raise ConfigError(f"{where}: {text!r} has no LLD macro like {{#NAME}}: every discovered resource would "
                          "make the same one")
    if known is not None:
        for m in found:
            if m not in known:
                raise ConfigError(f"{where}: unknown LLD macro {m} (the rule gives {', '.join(sorted(known))}; "
                                  "add it under lld_macro_paths)")
    bad = re.search(r"\{#[^}]*\}", LLD_MACRO.sub("", text))
    if bad:
        raise ConfigError(f"{where}: {bad.group()!r} is not an LLD macro (upper-case letters, digits, '_' and '.')")


def filter_from_doc(v: Any, where: str) -> LldFilter:
    if v is None:
        return LldFilter()
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected {{evaltype, formula, conditions}}")
    _check_keys(v, FILTER_FIELDS, where)
    ev = v.get("evaltype", "and_or")
    if ev not in EVALTYPES:
        raise ConfigError(f"{where}.evaltype: {ev!r} is not one of {', '.join(EVALTYPES)}")
    conds = v.get("conditions") or []
    if not isinstance(conds, list):
        raise ConfigError(f"{where}.conditions: expected a list of {{macro, value, operator}}")
    out = LldFilter(evaltype=EVALTYPES[ev], formula=_text(v, "formula", where, ""))
    for i, c in enumerate(conds):
        w = f"{where}.conditions[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(f"{w}: expected {{macro: '{{#NAME}}', value: REGEX, operator: matches}}")
        _check_keys(c, CONDITION_FIELDS, w)
        macro = _text(c, "macro", w, limit=64)
        if not LLD_MACRO.fullmatch(macro):
            raise ConfigError(f"{w}.macro: {macro!r} is not an LLD macro like {{#NAME}}")
        op = c.get("operator", "matches")
        if op not in OPERATORS:
            raise ConfigError(f"{w}.operator: {op!r} is not one of {', '.join(OPERATORS)}")
        value = _text(c, "value", w, "")
        if OPERATORS[op] in (8, 9):
            check_regex(value, f"{w}.value")
        fid = _text(c, "formulaid", w, chr(ord("A") + i) if i < 26 else "", 8)
        if not re.fullmatch(r"[A-Z]+", fid):
            raise ConfigError(f"{w}.formulaid: {fid!r} is not a label of capital letters like A")
        if fid in [x.formulaid for x in out.conditions]:
            raise ConfigError(f"{w}.formulaid: {fid!r} appears twice")
        out.conditions.append(Condition(macro, value, OPERATORS[op], fid))
    if out.evaltype == 3:
        if not out.formula:
            raise ConfigError(f"{where}.formula: a custom filter needs a formula like \"A and (B or C)\"")
        try:
            evaluate_formula(out.formula, {x.formulaid: True for x in out.conditions})
        except ValueError as e:
            raise ConfigError(f"{where}.formula: {e}") from None
    elif out.formula:
        raise ConfigError(f"{where}.formula: only a custom filter (evaltype: custom) has a formula")
    return out


def check_regex(value: str, where: str) -> None:
    if value.startswith("@"):
        raise ConfigError(f"{where}: {value!r}: global regular expressions (@name) are not supported; write the "
                          "expression itself")
    if "{$" in value:
        return  # a user macro: checked once resolved for a host
    try:
        re.compile(value)
    except re.error as e:
        raise ConfigError(f"{where}: {value!r} is not a regular expression: {e}") from None


def graph_from_doc(g: Any, where: str) -> GraphSpec:
    if not isinstance(g, dict):
        raise ConfigError(f"{where}: expected {{name, items: [{{key, color, drawtype}}]}}")
    _check_keys(g, GRAPH_FIELDS, where)
    gt = g.get("graphtype", "normal")
    if gt not in GRAPHTYPES:
        raise ConfigError(f"{where}.graphtype: {gt!r} is not one of {', '.join(GRAPHTYPES)}")
    spec = GraphSpec(name=_text(g, "name", where, limit=128), graphtype=GRAPHTYPES[gt])
    for name in ("width", "height"):
        v = g.get(name, getattr(spec, name))
        if not isinstance(v, int) or isinstance(v, bool) or not 20 <= v <= 65535:
            raise ConfigError(f"{where}.{name}: expected a number of pixels from 20 to 65535")
        setattr(spec, name, v)
    items = g.get("items")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}.items: a graph needs a list of items ({{key, color, drawtype}})")
    for i, x in enumerate(items):
        w = f"{where}.items[{i}]"
        if not isinstance(x, dict):
            raise ConfigError(f"{w}: expected {{key, color, drawtype}}")
        _check_keys(x, GRAPH_ITEM_FIELDS, w)
        if "color" in x and not isinstance(x["color"], str):  # YAML reads 009600 as a number
            raise ConfigError(f"{w}.color: write the colour in quotes, like '009600'")
        color = _text(x, "color", w, "009600", 6).upper()
        if not re.fullmatch(r"[0-9A-F]{6}", color):
            raise ConfigError(f"{w}.color: {color!r} is not an RGB colour like 00AA00")
        dt = x.get("drawtype", "line")
        if dt not in DRAWTYPES:
            raise ConfigError(f"{w}.drawtype: {dt!r} is not one of {', '.join(DRAWTYPES)}")
        side = x.get("yaxisside", "left")
        if side not in ("left", "right"):
            raise ConfigError(f"{w}.yaxisside: {side!r} is not one of left, right")
        fnc = x.get("calc_fnc", "avg")
        fncs = {"min": 1, "avg": 2, "max": 4, "all": 7}
        if fnc not in fncs:
            raise ConfigError(f"{w}.calc_fnc: {fnc!r} is not one of {', '.join(fncs)}")
        spec.items.append(GraphItem(_text(x, "key", w, limit=2048), color, DRAWTYPES[dt], int(side == "right"),
                                    fncs[fnc]))
    return spec


def graph_to_doc(g: GraphSpec) -> dict[str, Any]:
    fncs = {1: "min", 2: "avg", 4: "max", 7: "all"}
    d: dict[str, Any] = {"name": g.name}
    if (g.width, g.height) != (900, 200):
        d["width"], d["height"] = g.width, g.height
    if g.graphtype:
        d["graphtype"] = GRAPHTYPE_LABELS[g.graphtype]
    items = []
    for x in g.items:
        gi: dict[str, Any] = {"key": x.key, "color": x.color, "drawtype": DRAWTYPE_LABELS[x.drawtype]}
        if x.yaxisside:
            gi["yaxisside"] = "right"
        if x.calc_fnc != 2:
            gi["calc_fnc"] = fncs[x.calc_fnc]
        items.append(gi)
    d["items"] = items
    return d


def rule_to_doc(r: DiscoveryRuleSpec) -> dict[str, Any]:
    from vigil.server.config.alerting import trigger_to_doc

    d = item_to_doc(r.rule)
    d.pop("value_type", None)
    if r.lifetime != "30d":
        d["lifetime"] = r.lifetime
    if r.macro_paths:
        d["lld_macro_paths"] = dict(r.macro_paths)
    if r.filter.conditions:
        f: dict[str, Any] = {"evaltype": EVALTYPE_LABELS[r.filter.evaltype]}
        if r.filter.formula:
            f["formula"] = r.filter.formula
        f["conditions"] = [{"macro": c.macro, "value": c.value, "operator": OPERATOR_LABELS[c.operator],
                            "formulaid": c.formulaid} for c in r.filter.conditions]
        d["filter"] = f
    if r.item_prototypes:
        d["item_prototypes"] = [item_to_doc(x) for x in r.item_prototypes]
    if r.trigger_prototypes:
        d["trigger_prototypes"] = [trigger_to_doc(x) for x in r.trigger_prototypes]
    if r.graph_prototypes:
        d["graph_prototypes"] = [graph_to_doc(x) for x in r.graph_prototypes]
    return d


# --- running a rule ---------------------------------------------------------------------------------


class DiscoveryError(ValueError):
    """A discovery value that cannot be used; the rule becomes not supported with this reason."""


def rows_from_value(text: str, macro_paths: dict[str, str]) -> list[dict[str, str]]:
    """The LLD macros of every row: the row's own `{#NAME}` keys, then those of the macro paths."""
    from vigil.server.preprocessing.jsonpath import JSONPathError, NoMatch, query

    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DiscoveryError(f"the value is not JSON: {e}") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DiscoveryError("the value is not a JSON array of objects (nor {\"data\": [...]})")
    if len(doc) > MAX_ROWS:
        raise DiscoveryError(f"the value has {len(doc)} rows, over the maximum of {MAX_ROWS}")
    out = []
    for i, row in enumerate(doc):
        if not isinstance(row, dict):
            raise DiscoveryError(f"row {i} of the value is not a JSON object")
        macros = {k: _macro_text(v) for k, v in row.items() if isinstance(k, str) and LLD_MACRO.fullmatch(k)}
        for macro, path in macro_paths.items():
            try:
                macros[macro] = query(path, row)
            except NoMatch:
                macros.pop(macro, None)
            except JSONPathError as e:
                raise DiscoveryError(f"lld_macro_paths {macro}: {e}") from None
        out.append(macros)
    return out


def _macro_text(v: Any) -> str:
    from vigil.server.preprocessing.jsonpath import to_text

    return to_text(v)


def condition_true(c: Condition, row: dict[str, str], value: str) -> bool:
    """`value`: the condition's value with user macros resolved."""
    if c.operator == 12:
        return c.macro in row
    if c.operator == 13:
        return c.macro not in row
    if c.macro not in row:  # as Zabbix: a row without the macro is not discovered
        return False
    found = re.search(value, row[c.macro]) is not None
    return found if c.operator == 8 else not found


def row_passes(f: LldFilter, row: dict[str, str], values: list[str]) -> bool:
    """Whether the filter keeps the row; `values`: each condition's value, user macros resolved."""
    if not f.conditions:
        return True
    results = [condition_true(c, row, v) for c, v in zip(f.conditions, values, strict=True)]
    if f.evaltype == 1:
        return all(results)
    if f.evaltype == 2:
        return any(results)
    if f.evaltype == 3:
        return evaluate_formula(f.formula, {c.formulaid: r for c, r in zip(f.conditions, results, strict=True)})
    groups: dict[str, bool] = {}  # and/or: the same macro's conditions or'ed, different macros and'ed
    for c, r in zip(f.conditions, results, strict=True):
        groups[c.macro] = groups.get(c.macro, False) or r
    return all(groups.values())


_TOKEN = re.compile(r"\s*(?:(\()|(\))|(and\b)|(or\b)|(not\b)|([A-Z]+))")


def evaluate_formula(formula: str, values: dict[str, bool]) -> bool:
    """A custom filter formula: labels, and, or, not and parentheses (and binds tighter than or)."""
    tokens: list[str] = []
    pos = 0
    text = formula.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected {text[pos:].strip()[:20]!r} at position {pos}")
        tokens.append(m.group().strip())
        pos = m.end()
    i = 0

    def atom() -> bool:
        nonlocal i
        if i >= len(tokens):
            raise ValueError("the formula ends too early")
        tok = tokens[i]
        i += 1
        if tok == "not":
            return not atom()
        if tok == "(":
            v = disj()
            if i >= len(tokens) or tokens[i] != ")":
                raise ValueError("a '(' is not closed")
            i += 1
            return v
        if tok in values:
            return values[tok]
        raise ValueError(f"{tok!r} is not the formulaid of a condition" if tok.isupper() else f"unexpected {tok!r}")

    def conj() -> bool:
        nonlocal i
        v = atom()
        while i < len(tokens) and tokens[i] == "and":
            i += 1
            v = atom() and v
        return v

    def disj() -> bool:
        nonlocal i
        v = conj()
        while i < len(tokens) and tokens[i] == "or":
            i += 1
            v = conj() or v
        return v

    v = disj()
    if i != len(tokens):
        raise ValueError(f"unexpected {tokens[i]!r}")
    return v


def substitute(text: str, macros: dict[str, str]) -> str:
    if "{#" not in text:
        return text
    return LLD_MACRO.sub(lambda m: macros.get(m.group(), m.group()), text)


def substitute_key(key: str, macros: dict[str, str]) -> str:
    """LLD macros in an item key; a parameter that then needs quotes (a ',' or ']' in a file system's
    name...) gets them, and a quoted one gets its '"' escaped, as Zabbix does."""
    start = key.find("[")
    if "{#" not in key or start < 0:
        return substitute(key, macros)
    out = [substitute(key[:start + 1], macros)]
    pos, n = start + 1, len(key)
    while pos < n:
        ch = key[pos]
        if ch == '"':
            j = pos + 1
            while j < n and key[j] != '"':
                j += 2 if key[j] == "\\" else 1
            inner = LLD_MACRO.sub(lambda m: macros.get(m.group(), m.group()).replace('"', '\\"'), key[pos + 1:j])
            out.append(f'"{inner}"')
            pos = j + 1
        elif ch == "[":
            j = key.find("]", pos)
            j = n - 1 if j < 0 else j
            out.append(substitute(key[pos:j + 1], macros))
            pos = j + 1
        elif ch in ",]":
            out.append(ch)
            pos += 1
            continue
        else:
            j = pos
            while j < n and key[j] not in ",]":
                j += 1
            raw = key[pos:j]
            val = substitute(raw, macros)
            if val != raw and (any(c in val for c in ',]["') or val.startswith(" ")):
                val = '"' + val.replace('"', '\\"') + '"'
            out.append(val)
            pos = j
            continue
        while pos < n and key[pos] not in ",]":  # spaces after a quoted parameter or an array
            out.append(key[pos])
            pos += 1
    return "".join(out)


def lifetime_seconds(text: str) -> int:
    try:
        return seconds(text)
    except (DurationError, ValueError):
        raise DiscoveryError(f"lifetime {text!r} is not a duration") from None
