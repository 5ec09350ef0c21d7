"""Imports point one way (ARCHITECTURE.md): agent imports nothing of ours and only the standard
library and psutil, since it goes on every host; server imports agent but no later room. The rooms
install as vigil.agent, vigil.server, …, and are imported by those names only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = {"agent", "server", "proxy", "alerts", "web", "run"}
MAY_IMPORT = {"agent": set(), "server": {"agent"}, "proxy": {"agent", "server"}, "alerts": {"server"},
              "web": {"server", "alerts"}, "run": {"agent", "server", "proxy", "alerts", "web"}}


def _top(module: str) -> str:
    """The room of `vigil.server.x` is `server`; anything else is named by its first part."""
    parts = module.split(".")
    return parts[1] if parts[0] == "vigil" and len(parts) > 1 else parts[0]


def _optional(tree: ast.AST) -> set[int]:
    """Imports inside `try: ... except ImportError:` (the module works without them)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)}
    return out


def _modules(path: Path, *, required_only: bool = False) -> set[str]:
    out = set()
    tree = ast.parse(path.read_text(), str(path))
    skip = _optional(tree) if required_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
    return out


def _imports(path: Path, *, required_only: bool = False) -> set[str]:
    return {_top(m) for m in _modules(path, required_only=required_only)}


def test_rooms_import_only_what_they_may() -> None:
    wrong = []
    for room, allowed in MAY_IMPORT.items():
        for path in (ROOT / room).rglob("*.py"):
            for top in _imports(path) & ROOMS - {room} - allowed:
                wrong.append(f"{path.relative_to(ROOT)} imports {top}")
    assert wrong == []


def test_rooms_are_imported_through_the_vigil_namespace() -> None:
    bare = []
    for path in [*ROOT.glob("*/**/*.py"), *ROOT.glob("*.py")]:
        if ".venv" in path.parts:
            continue
        for m in _modules(path):
            if m.split(".")[0] in ROOMS:
                bare.append(f"{path.relative_to(ROOT)} imports {m} (write vigil.{m})")
    assert bare == []


def test_agent_needs_only_the_standard_library_and_psutil() -> None:
    extra = []
    for path in (ROOT / "agent").rglob("*.py"):
        for top in _imports(path, required_only=True) - set(sys.stdlib_module_names) - {"vigil", "agent", "psutil"}:
            extra.append(f"{path.relative_to(ROOT)} imports {top}")
    assert extra == []
