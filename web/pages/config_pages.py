"""The Configuration pages of alerting and users beyond the host forms, registered by the app factory."""

from __future__ import annotations

from vigil.web.pages import actions, items, maintenance, mediatypes, proxies, proxy_groups, saved_filters, templates

CONFIG_PAGES = (actions, items, maintenance, mediatypes, templates, proxies, saved_filters, proxy_groups)
