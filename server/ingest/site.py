"""The central server's side of site servers: `vigil site config` registers a site's hosts and items.

A site server (a full `vigil server` with VIGIL_UPSTREAM and VIGIL_SITE, proxy/site.py) is an active
proxy of the central server: the central's configuration declares it (`proxies: [{name: NAME,
mode: active}]`) and nothing is created for a name it does not know. When its configuration version
changes the site sends

    {"request": "vigil site config", "host": NAME, "hosts": [{"host": H, "name": N,
      "items": [{"itemid": SITE_ID, "key": K, "value_type": "float", "name": ..., "units": ...,
                 "tags": [{"tag": T, "value": V}], "history": ..., "trends": ...}]}]}

and the central creates or updates those hosts in host group Site/NAME, monitored by proxy NAME,
with trapper items of the same keys, in one transaction, and answers
`{"response": "success", "items": [[SITE_ID, CENTRAL_ID], ...]}`. The site sends its records under
the central's ids through the ordinary `proxy data` path (server/ingest/proxy.py): session/id dedup,
and values only for hosts monitored by that proxy, so a site cannot write to another site's hosts.

Refused whole, naming the field: an unknown or passive proxy name, a host name that the central or
another site already uses, a bad key or value type. Hosts and items the site stops sending are kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vigil.agent.protocol.messages import ProtocolError, dumps, failure
from vigil.agent.protocol.proxy import proxy_name
from vigil.server.config.model import ConfigDoc, ConfigError, HostSpec, item_from_doc
from vigil.server.config.proxies import ProxyRef
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.sites import SITE_GROUP, host_owners, item_ids, site_group
from vigil.server.config.tables import ProxyMode
from vigil.server.ingest.proxy import ProxyHandler

log = logging.getLogger("vigil.ingest.site")

MAX_HOSTS = 100_000
_HOST_FIELDS = {"host", "name", "items"}


class SiteError(ValueError):
    """A site configuration refused whole; the text names the field."""


def parse_hosts(obj: dict[str, Any]) -> list[tuple[HostSpec, list[int]]]:
    """The hosts of a `vigil site config`, each with its items' site ids (in the items' order)."""
    hosts = obj.get("hosts")
    if not isinstance(hosts, list):
        raise SiteError("hosts: expected a list of hosts")
    if len(hosts) > MAX_HOSTS:
        raise SiteError(f"hosts: more than {MAX_HOSTS} hosts")
    out: list[tuple[HostSpec, list[int]]] = []
    names: set[str] = set()
    site_ids: set[int] = set()
    for i, h in enumerate(hosts):
        where = f"hosts[{i}]"
        if not isinstance(h, dict):
            raise SiteError(f"{where}: expected an object with host and items")
        extra = sorted(set(h) - _HOST_FIELDS)
        if extra:
            raise SiteError(f"{where}: unknown field {extra[0]!r} (known: host, items, name)")
        name = h.get("host")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise SiteError(f"{where}.host: expected a host name of 1 to 128 characters")
        if name in names:
            raise SiteError(f"{where}.host: {name!r} appears twice")
        names.add(name)
        display = h.get("name", "")
        if not isinstance(display, str):
            raise SiteError(f"{where}.name: expected text")
        items = h.get("items", [])
        if not isinstance(items, list):
            raise SiteError(f"{where}.items: expected a list")
        specs, ids, keys = [], [], set()
        for k, it in enumerate(items):
            iw = f"{where}.items[{k}]"
            if not isinstance(it, dict):
                raise SiteError(f"{iw}: expected an object with itemid and key")
            sid = it.get("itemid")
            if not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0:
                raise SiteError(f"{iw}.itemid: expected the site's item id (a positive integer)")
            if sid in site_ids:
                raise SiteError(f"{iw}.itemid: {sid} appears twice")
            site_ids.add(sid)
            try:
                spec = item_from_doc({k2: v for k2, v in it.items() if k2 != "itemid"} | {"type": "trapper"}, iw)
            except ConfigError as e:
                raise SiteError(str(e)) from None
            if spec.key in keys:
                raise SiteError(f"{iw}.key: {spec.key!r} appears twice")
            keys.add(spec.key)
            specs.append(spec)
            ids.append(sid)
        out.append((HostSpec(host=name, name=display or name, items=specs), ids))
    return out


class SiteRegistrar:
    """The listener's `sites` hook."""

    def __init__(self, repo: ConfigRepo, proxies: ProxyHandler) -> None:
        self.repo = repo
        self.proxies = proxies

    async def __call__(self, obj: dict[str, Any], peer: str) -> bytes:
        try:
            name = proxy_name(obj)
        except ProtocolError as e:
            log.warning("site config from %s: %s", peer, e)
            return failure(str(e))
        try:
            proxy = (await self.proxies.proxies()).get(name)
        except Exception as e:
            log.warning("site config from %s: cannot read the proxies: %s", peer, e)
            return failure("the configuration database is not available")
        if proxy is None:
            log.warning("site config from %s: site [%s] is not declared as a proxy", peer, name)
            return failure(f"host: site \"{name}\" is not declared here (proxies: [{{name: {name}, mode: active}}])")
        if proxy.mode != ProxyMode.ACTIVE:
            return failure(f"host: proxy \"{name}\" is configured for passive mode; a site is an active proxy")
        try:
            hosts = parse_hosts(obj)
            mapping = await asyncio.to_thread(self.register, proxy, hosts)
        except SiteError as e:
            log.warning("site config from [%s] at %s refused: %s", name, peer, e)
            return failure(f"site configuration refused: {e}")
        except Exception as e:
            log.error("site config from [%s] at %s not applied: %s", name, peer, e)
            return failure(f"site configuration not applied: {e}")
        self.proxies._views.pop(proxy.proxyid, None)  # its next proxy data is checked against the new items
        log.info("site [%s] at %s registered %d hosts, %d items", name, peer, len(hosts), len(mapping))
        return dumps({"response": "success", "items": mapping})

    def register(self, proxy: ProxyRef, hosts: list[tuple[HostSpec, list[int]]]) -> list[list[int]]:
        group = site_group(proxy.name)
        owners = host_owners(self.repo.engine, [h.host for h, _ in hosts])
        for i, (h, _) in enumerate(hosts):
            owner = owners.get(h.host)
            if owner is None:
                continue
            proxyid, groups = owner
            if proxyid == proxy.proxyid and group in groups:
                continue
            other = [g[len(SITE_GROUP):] for g in groups if g.startswith(SITE_GROUP)]
            whose = f"site {other[0]!r}" if other else "the central server"
            raise SiteError(f"hosts[{i}].host: {h.host!r} is already a host of {whose}, not of site {proxy.name!r}")
        doc = ConfigDoc(host_groups=[group], hosts=[
            HostSpec(host=h.host, name=h.name, groups=[group], proxy=proxy.name, items=h.items) for h, _ in hosts])
        if hosts:
            try:
                self.repo.apply(doc)
            except ConfigError as e:
                raise SiteError(str(e)) from None
        central = item_ids(self.repo.engine, [h.host for h, _ in hosts])
        return [[sid, central[(h.host, it.key)]] for h, ids in hosts for it, sid in zip(h.items, ids, strict=True)]
