"""The web app over a real migrated store (SQLite and PostgreSQL), with users of every role and data."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import Permission, Role
from vigil.server.config.users import UserRepo, hash_password
from vigil.server.settings import Settings
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch

PASSWORD = "correct horse battery"
CONFIG = {
    "host_groups": ["Linux servers", "Secret"],
    "hosts": [
        {"host": "web-01", "name": "Web 01", "groups": ["Linux servers"], "items": [
            {"key": "cpu.util", "name": "CPU utilization", "units": "%", "tags": {"component": "cpu"}},
            {"key": "net.bytes", "name": "Bytes in", "value_type": "unsigned", "units": "B"},
            {"key": "app.version", "name": "Version", "value_type": "char"},
        ]},
        {"host": "db-secret", "groups": ["Secret"], "items": [{"key": "cpu.util", "units": "%"}]},
    ],
}


@dataclass
class Env:
    app: Flask
    url: str
    users: UserRepo
    repo: ConfigRepo
    now: int
    data_dir: Path

    def client(self, username: str | None = None, password: str = PASSWORD) -> FlaskClient:
        c = self.app.test_client()
        if username is not None:
            r = login(c, username, password)
            assert r.status_code == 302, r.get_data(as_text=True)[:500]
        return c

    def itemid(self, host: str, key: str) -> int:
        found = self.repo.item(host, key)
        assert found is not None
        return found[0]

    def hostid(self, host: str) -> int:
        from vigil.server.config.browse import Browse

        hid = Browse(self.repo.engine).host_id(host)
        assert hid is not None
        return hid


def csrf(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, "no csrf_token field on the page"
    return m.group(1)


def login(c: FlaskClient, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    token = csrf(c.get("/login").get_data(as_text=True))
    return c.post("/login", data={"csrf_token": token, "username": username, "password": password})


def form_token(c: FlaskClient, path: str = "/profile") -> str:
    return csrf(c.get(path).get_data(as_text=True))


_HASHES: dict[str, str] = {}


def _hash_once(password: str) -> str:
    """users.hash_password, each password hashed once a session: the fixture's five users share one
    password, and a scrypt hash costs a tenth of a second or more a user (on a busy machine seconds).
    The hash is a real one; signing in checks it with scrypt as always."""
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)  # the module's own, imported before any patch
    return _HASHES[password]


@pytest.fixture
def env(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    from vigil.server.config import users as users_module
    from vigil.web.app import create_app

    settings = Settings.from_env({"VIGIL_DATA_DIR": str(tmp_path / "data"), "VIGIL_DATABASE_URL": migrated_url,
                                  "VIGIL_LOGIN_ATTEMPTS": "3", "VIGIL_LOGIN_BLOCK": "30"})
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(CONFIG))
    users = UserRepo(engine)
    with monkeypatch.context() as m:  # only for these five: users a test makes are hashed as always
        m.setattr(users_module, "hash_password", _hash_once)
        users.create_user("admin", PASSWORD, Role.SUPER_ADMIN)
        users.create_user("ops", PASSWORD, Role.ADMIN, groups=["Operators"])
        users.create_user("viewer", PASSWORD, Role.USER, groups=["Viewers"])
        users.create_user("guest", PASSWORD, Role.GUEST, groups=["Guests"])
        users.create_user("nobody", PASSWORD, Role.USER)
    users.set_rights("Operators", {"Linux servers": Permission.READ_WRITE, "Secret": Permission.DENY})
    users.set_rights("Viewers", {"Linux servers": Permission.READ})
    users.set_rights("Guests", {"Linux servers": Permission.READ_WRITE})  # a guest still only reads
    now = int(time.time())
    store = open_store(migrated_url)
    cpu, net = repo.item("web-01", "cpu.util"), repo.item("web-01", "net.bytes")
    ver, secret = repo.item("web-01", "app.version"), repo.item("db-secret", "cpu.util")
    assert cpu and net and ver and secret
    store.write(WriteBatch(
        floats=[(cpu[0], now - 600 + 60 * i, 0, 10.0 + i) for i in range(10)]
        + [(secret[0], now - 60, 0, 99.0)],
        uints=[(net[0], now - 600 + 60 * i, 0, 1024 * (i + 1)) for i in range(10)],
        strs=[(ver[0], now - 30, 0, "1.2.3 <script>alert(1)</script>")],
    ))
    store.close()
    app = create_app(settings, engine=engine, config={"TESTING": True})
    try:
        yield Env(app, migrated_url, users, repo, now, tmp_path / "data")
    finally:
        app.extensions["vigil"].close()
