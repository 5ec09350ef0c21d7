"""SSH, Telnet and calculated items in the YAML: import, export round trip, what the pollers get, errors."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ItemType

from tests.server.pollers.test_scheduler import repo  # noqa: F401

DOC = """
hosts:
  - host: r1
    interfaces: [{type: agent, address: 10.0.0.7}]
    macros: {'{$SSH.USER}': monitor}
    items:
      - {key: 'ssh.run[uptime]', type: ssh, value_type: text, username: '{$SSH.USER}', password: pw,
         params: 'uptime; echo {HOST.CONN}'}
      - {key: 'ssh.run[df,,2222]', type: ssh, value_type: text, auth: publickey, username: root,
         publickey: id_ed25519.pub, privatekey: id_ed25519, password: passphrase, params: df -h}
      - {key: 'telnet.run[ver]', type: telnet, value_type: text, username: admin, password: cisco,
         params: show version}
      - {key: in, type: trapper, value_type: float}
      - {key: 'total', type: calculated, value_type: float, delay: 30s, params: 'last(//in)*2'}
"""


def _load(text: str) -> Any:
    return doc_from_dict(yaml.safe_load(text))


def test_round_trip_and_what_the_pollers_get(repo: ConfigRepo) -> None:  # noqa: F811
    repo.apply(_load(DOC))
    exported = repo.export()
    items = {i["key"]: i for i in next(h for h in exported["hosts"] if h["host"] == "r1")["items"]}
    assert items["ssh.run[uptime]"]["auth"] == "password" and items["ssh.run[uptime]"]["type"] == "ssh"
    key = items["ssh.run[df,,2222]"]
    assert (key["auth"], key["publickey"], key["privatekey"], key["password"]) == (
        "publickey", "id_ed25519.pub", "id_ed25519", "passphrase")
    assert items["telnet.run[ver]"]["type"] == "telnet" and items["total"]["params"] == "last(//in)*2"
    repo.apply(_load(yaml.safe_dump(exported)))
    assert repo.export() == exported
    cfg = repo.poll_config()
    by_key = {i.key: i for i in cfg.items.values()}
    up = by_key["ssh.run[uptime]"]
    assert up.type == ItemType.SSH and up.poll.username == "monitor" and up.poll.params == "uptime; echo 10.0.0.7"
    assert up.interface is not None and up.interface.address == "10.0.0.7" and not up.error
    assert by_key["ssh.run[df,,2222]"].poll.auth == 1 and by_key["telnet.run[ver]"].type == ItemType.TELNET
    assert by_key["total"].type == ItemType.CALCULATED and by_key["total"].delay == 30
    calc = {(r.host, r.key): r for r in repo.calc_items()}
    assert calc[("r1", "in")].value_type == 0 and ("r1", "total") in calc


@pytest.mark.parametrize(("item", "message"), [
    ("{key: 'ssh.run[a]', type: ssh, username: u}", "items[0].params: a ssh item needs the script"),
    ("{key: 'ssh.run[a]', type: ssh, params: ls}", "items[0].username: a ssh item needs the user to log in as"),
    ("{key: 'telnet.run[a]', type: telnet, params: ls}", "items[0].username: a telnet item needs the user"),
    ("{key: 'ssh.run[a]', type: ssh, params: ls, username: u, auth: publickey, privatekey: k}",
     "items[0].publickey: publickey authentication needs the publickey file name"),
    ("{key: 'ssh.run[a]', type: ssh, params: ls, username: u, auth: publickey, publickey: k.pub, "
     "privatekey: ../k}", "items[0].privatekey: '../k' must be a file name in VIGIL_SSH_KEY_LOCATION"),
    ("{key: 'ssh.run[a]', type: ssh, params: ls, username: u, auth: basic}",
     "items[0].auth: 'basic' is not one of password, publickey"),
    ("{key: k, type: agent, publickey: k.pub}", "items[0].publickey: only ssh items with auth: publickey"),
    ("{key: k, type: calculated, params: 'last(//x'}",
     "items[0].params: expected ')' to close last( at offset 0, found the end of the expression at position 8"),
    ("{key: k, type: calculated, params: 'last_foreach(/*/x)'}",
     "items[0].params: last_foreach() can only be the parameter of an aggregate function"),
])
def test_bad_channel_items_name_the_field(item: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(f"hosts: [{{host: h, items: [{item}]}}]")
    assert message in str(e.value)
