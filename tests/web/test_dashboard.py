"""The dashboard's watched host: this machine's host when it is visible, else the first host (by name)
linked to the built-in Linux template, else the first host; never a host the user may not read."""

from __future__ import annotations

import re
import socket

from vigil.server.config.model import doc_from_dict

from tests.web.conftest import CONFIG, Env


def watched(env: Env, user: str) -> str | None:
    m = re.search(r'<h2 class="section">([^<]+?) <span', env.client(user).get("/").get_data(as_text=True))
    return m.group(1) if m else None


def apply(env: Env, hosts: list[dict]) -> None:
    doc = {**CONFIG, "templates": [{"template": "Linux by Vigil agent", "items": [{"key": "system.cpu.util"}]}],
           "hosts": CONFIG["hosts"] + hosts}
    env.repo.apply(doc_from_dict(doc))


def test_the_first_linux_host_even_past_the_first_twenty(env: Env) -> None:
    assert watched(env, "admin") in ("Web 01", "db-secret")  # none linked: the first by name (collation decides)
    apply(env, [{"host": f"a-{n:02d}", "groups": ["Linux servers"]} for n in range(25)]
          + [{"host": "zz-linux", "groups": ["Linux servers"], "templates": ["Linux by Vigil agent"]},
             {"host": "zz-secret", "groups": ["Secret"], "templates": ["Linux by Vigil agent"]}])
    assert watched(env, "admin") == "zz-linux"
    assert watched(env, "viewer") == "zz-linux"
    assert watched(env, "nobody") is None


def test_this_machine_first_when_visible(env: Env) -> None:
    me = socket.gethostname()
    apply(env, [{"host": "aa-linux", "groups": ["Linux servers"], "templates": ["Linux by Vigil agent"]},
                {"host": me, "groups": ["Secret"]}])
    assert watched(env, "admin") == me
    assert watched(env, "ops") == "aa-linux"  # Secret is denied to ops: not this machine's host for them
