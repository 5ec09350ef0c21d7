"""Docs and code kept honest: every setting and CLI option documented; migrations = declared tables."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from vigil.run.cli import build_parser
from vigil.server.config.migrate import engine_for, head_revision, upgrade
from vigil.server.config.tables import metadata
from vigil.server.settings import SETTINGS, Settings, SettingsError

from tests.test_rooms import MAY_IMPORT

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"`(VIGIL_[A-Z_]+)`", doc))
    declared = {s.name for s in SETTINGS}
    assert declared - documented == set(), "settings missing from docs/settings.md"
    assert {d for d in documented - declared if d not in ("VIGIL_TEST_PG", "VIGIL_BENCH_PG")} == set()


def _options(parser: argparse.ArgumentParser, path: str = "vigil") -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {path: []}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_options(sub, f"{path} {name}"))
        elif action.option_strings and action.dest != "help":
            out[path].append(action.option_strings)
    return out


def test_every_cli_command_and_option_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for command, options in _options(build_parser()).items():
        words = command.split()
        if len(words) > 1 and not any(w in readme for w in (command, " ".join(words[1:]))):
            # `vigil host create/delete/link/unlink` documents several subcommands at once
            assert words[-1] in readme, f"{command} is not in README.md"
        for opt in options:
            assert any(re.search(re.escape(o) + r"(?![\w-])", readme) for o in opt), f"{command} {opt} not in README"


def test_bad_settings_name_the_variable() -> None:
    for env, words in [
        ({"VIGIL_LISTEN": "nope"}, "VIGIL_LISTEN='nope': expected HOST:PORT"),
        ({"VIGIL_LISTEN": "127.0.0.1:99999"}, "port from 1 to 65535"),
        ({"VIGIL_TIMEOUT": "abc"}, "VIGIL_TIMEOUT='abc': expected a float"),
        ({"VIGIL_MAX_CONNECTIONS": "0"}, "VIGIL_MAX_CONNECTIONS='0': must be between 1 and 65536"),
        ({"VIGIL_DATABASE_URL": "mysql://x"}, "expected sqlite:///PATH or postgresql://"),
        ({"VIGIL_LOG_LEVEL": "loud"}, "VIGIL_LOG_LEVEL='loud'"),
    ]:
        try:
            Settings.from_env(env)
        except SettingsError as e:
            assert words in str(e)
        else:
            raise AssertionError(f"{env} was accepted")
    s = Settings.from_env({"VIGIL_DATA_DIR": "/tmp/x"})
    assert s.database_url == "sqlite:////tmp/x/vigil.db" and s.listen == ("127.0.0.1", 10051)
    assert Settings.from_env({"VIGIL_DATABASE_URL": "postgres://u@h/d"}).database_url == "postgresql://u@h/d"


def test_migrations_create_exactly_the_declared_tables(database_url: str) -> None:
    engine = engine_for(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diff = compare_metadata(ctx, metadata)
        assert ctx.get_current_revision() == head_revision()
    # Indexes and CHECKs the store relies on are created by hand in the migrations for both
    # backends; partitions (PostgreSQL) are made by the store at run time. Tables and columns must agree.
    tables_and_columns = [d for d in diff if d[0] in ("add_table", "remove_table", "add_column", "remove_column")
                          and not (d[0] == "remove_table" and re.match(r"history\w*_p\d{8}$", d[1].name))]
    assert tables_and_columns == []
    assert set(sa.inspect(engine).get_table_names()) >= {t for t in metadata.tables}
    engine.dispose()


def _resolves(dotted: str) -> bool:
    """`vigil.server.ingest.batcher.Batcher`: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 1, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_architecture_names_only_what_exists() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    names = set(re.findall(r"`([^`\s]+)`", doc))
    paths = {n for n in names if "/" in n or n.endswith(".py")}
    dotted = {n for n in names if n.startswith("vigil.")}
    settings = {n for n in names if re.fullmatch(r"VIGIL_[A-Z_]+", n)}
    assert len(paths) > 20 and len(dotted) > 10, "the checks below would check next to nothing"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
    assert sorted(d for d in dotted if not _resolves(d)) == []
    assert settings - {s.name for s in SETTINGS} == set()


def test_architecture_rooms_are_the_enforced_ones() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([^|]+) \|$", doc, re.M)
    assert {room: set(re.findall(r"`(\w+)`", allowed)) for room, allowed in rows} == MAY_IMPORT
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
