"""AllowKey / DenyKey: item-key access rules, matched as zabbix_agentd 6.0 matches them.

A rule is a key pattern: a key name with `*` wildcards, then optionally `[params]`, each parameter a
`*` wildcard pattern. Patterns and requests are both parsed with the item-key syntax, so a rule holds
on the key's meaning, not its spelling: `DenyKey=vfs.file.contents[/etc/shadow]` also denies
`vfs.file.contents["/etc/shadow"]` and `vfs.file.contents[ /etc/shadow]`. The semantics follow
zabbix_agentd's check_request_access_rules():

- the first matching rule decides; a key no rule matches is allowed;
- `key` (no brackets) matches only the bare key, `key[]` only empty brackets (`key[]`, `key[""]`);
- `key[a,b]` matches exactly two parameters; a last parameter `*` matches any number of remaining
  ones (none included), and `key[*]` any parameters but not the bare key;
- the pattern `*` alone matches every key;
- an implicit `DenyKey=system.run[*]` ends the list unless a rule of that exact pattern is given.

Rules are compiled once (`KeyRules.build`), which also applies zabbix_agentd's start-up checks:
duplicate and conflicting rules are dropped with a warning, rules after a match-all rule are
unreachable, trailing AllowKey rules are redundant, and a list that ends up matching every key is
refused (KeyRulesError), as zabbix_agentd refuses to start on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vigil.agent.protocol.itemkey import ArrayParam, ItemKey, ItemKeyError, parse

_NAME = re.compile(r"[0-9A-Za-z_.\-*]+")
_STARS = re.compile(r"\*+")
SYSTEM_RUN_ALL = "system.run[*]"
MATCH_ALL_MESSAGE = ("Item key access rules are configured to match all keys, indicating possible configuration "
                     "problem. Please remove the rules if that was the purpose.")


class KeyRulesError(ValueError):
    """A rule list zabbix_agentd would refuse to start with."""


def _wildcard(pattern: str) -> re.Pattern[str] | str:
    """A compiled matcher for a `*` wildcard (the text itself when it has no `*`)."""
    if "*" not in pattern:
        return pattern
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")), re.S)


def _match(matcher: re.Pattern[str] | str, value: str) -> bool:
    if isinstance(matcher, str):
        return matcher == value
    return matcher.fullmatch(value) is not None


def param_text(p: str | list[str]) -> str:
    """A parameter as rules see it: an array is its items' text, as zabbix_agentd passes it."""
    if isinstance(p, ArrayParam):
        return p.text
    if isinstance(p, list):
        return ",".join(p)
    return p


@dataclass(frozen=True, slots=True)
class KeyRule:
    """One AllowKey/DenyKey pattern; ValueError when the pattern cannot be parsed."""

    allow: bool
    pattern: str
    source: str = field(default="", compare=False)  # the parameter it came from, for messages
    name: str = field(init=False, compare=False)
    params: tuple[str, ...] = field(init=False, compare=False)
    empty_args: bool = field(init=False, compare=False)
    _name_m: re.Pattern[str] | str = field(init=False, compare=False, repr=False)
    _param_m: tuple[re.Pattern[str] | str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        m = _NAME.match(self.pattern)
        if not m:
            raise ValueError("the key name is empty or has an invalid character")
        name = _STARS.sub("*", m.group())
        rest = self.pattern[m.end():]
        params: list[str] = []
        empty = False
        if rest:
            if not rest.startswith("["):
                raise ValueError(f"invalid character {rest[0]!r} after the key name")
            if not rest.endswith("]"):
                raise ValueError("the parameters do not end with ']'")
            if rest == "[]":
                empty = True
            else:
                try:
                    parsed = parse("k" + rest)
                except ItemKeyError as e:
                    raise ValueError(str(e)) from None
                params = [_STARS.sub("*", param_text(p)) for p in parsed.params]
                # key[a,*,*] means key[a,*]: repeated trailing `*` parameters are one
                while len(params) > 1 and params[-1] == "*" and params[-2] == "*":
                    params.pop()
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "empty_args", empty)
        object.__setattr__(self, "_name_m", _wildcard(name))
        object.__setattr__(self, "_param_m", tuple(_wildcard(p) for p in params))

    @property
    def kind(self) -> str:
        return self.source or ("AllowKey" if self.allow else "DenyKey")

    @property
    def matches_all(self) -> bool:
        return self.name == "*" and not self.params

    @property
    def identity(self) -> tuple[str, tuple[str, ...], bool]:
        """What makes two rules the same rule (their type aside), as zabbix_agentd compares them."""
        return self.name, self.params, self.empty_args

    def matches(self, key: ItemKey | str) -> bool:
        """True when this rule applies to the key (a parsed key, or text parsed here)."""
        if isinstance(key, str):
            try:
                key = parse(key)
            except ItemKeyError:
                return False
        return self._matches(key.name, [param_text(p) for p in key.params])

    def _matches(self, name: str, params: Sequence[str]) -> bool:
        if self.matches_all:
            return True
        n = len(params)
        empty_request = n == 1 and params[0] == ""
        nrule = len(self.params)
        if nrule:
            if self.params[-1] == "*":
                if nrule == 1 and n == 0:
                    return False  # key[*] does not match the bare key
            else:
                if n < nrule:
                    return False
                if n > nrule and not empty_request:
                    return False
        if not _match(self._name_m, name):
            return False
        if self.empty_args:
            return empty_request
        if not nrule:
            return n == 0
        for j, m in enumerate(self._param_m):
            last = j == nrule - 1
            if last and self.params[j] == "*":
                return True
            if n <= j or not _match(m, params[j]):
                return False
        return True


class KeyRules:
    """A compiled, ordered rule list; `allowed(key)` answers for a parsed key."""

    def __init__(self, rules: Sequence[KeyRule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def build(cls, rules: Iterable[KeyRule], warnings: list[str] | None = None) -> KeyRules:
        """Compile the configured rules as zabbix_agentd does at start; warnings go to `warnings`.

        Raises KeyRulesError when the rules would match every key.
        """
        warn = warnings if warnings is not None else []
        kept: list[KeyRule] = []
        for r in rules:
            same = next((k for k in kept if k.identity == r.identity), None)
            if same is not None:
                warn.append(f'{r.kind} access rule "{r.pattern}" was not added because it '
                            f'{"duplicates" if same.allow == r.allow else "conflicts with"} another rule defined above')
                continue
            kept.append(r)
        sysrun = KeyRule(False, SYSTEM_RUN_ALL)
        sysrun_index = next((i for i, r in enumerate(kept) if r.identity == sysrun.identity), None)
        counted = len(kept) - (sysrun_index is not None)
        if counted:
            match_all = next((i for i, r in enumerate(kept) if r.matches_all), None)
            if match_all is not None:
                if sysrun_index is None or match_all < sysrun_index:
                    sysrun_index = match_all
                for r in kept[match_all + 1:]:
                    warn.append(f'removed unreachable {r.kind} "{r.pattern}" rule')
                del kept[match_all + 1:]
            # A trailing AllowKey changes nothing (allow is the default), except for system.run,
            # which the implicit DenyKey=system.run[*] denies.
            i = len(kept) - 1
            while i >= 0 and kept[i].allow:
                if kept[i].name != "system.run":
                    if i != sysrun_index:
                        warn.append(f'removed redundant trailing AllowKey "{kept[i].pattern}" rule')
                    del kept[i]
                i -= 1
            if not kept:
                raise KeyRulesError(MATCH_ALL_MESSAGE)
        if sysrun_index is None:
            kept.append(sysrun)
        return cls(kept)

    def allowed(self, key: ItemKey) -> bool:
        params = [param_text(p) for p in key.params]
        for r in self.rules:
            if r._matches(key.name, params):
                return r.allow
        return True

    def allowed_text(self, text: str) -> bool:
        """For a key as text: a key that cannot be parsed is denied, as zabbix_agentd does."""
        try:
            return self.allowed(parse(text))
        except ItemKeyError:
            return False


def enable_remote_commands(value: str) -> KeyRule:
    """EnableRemoteCommands (deprecated in 6.0) is AllowKey or DenyKey=system.run[*] at its place in the file."""
    if value not in ("0", "1"):
        raise ValueError(f"wrong value of 'EnableRemoteCommands': {value!r} (expected 0 or 1)")
    return KeyRule(value == "1", SYSTEM_RUN_ALL, "EnableRemoteCommands")
