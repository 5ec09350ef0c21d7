"""The templates shipped with Vigil (server/config/builtin/*.yaml), by name.

A host's `templates: [Network interfaces by SNMP]` links a built-in template even when it was never
imported: the repo imports it on first use (ConfigRepo._template_id). `vigil config export` shows it
like any template, and importing a changed copy of it under the same name overrides it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

FILES = {
    "Linux by Vigil agent": "linux-by-vigil-agent.yaml",
    "Network interfaces by SNMP": "network-interfaces-by-snmp.yaml",
    "Generic SNMP device": "generic-snmp-device.yaml",
    "Prometheus node_exporter": "prometheus-node-exporter.yaml",
    "IPMI sensors": "ipmi-sensors.yaml",
    "Generic Java JMX": "generic-java-jmx.yaml",
}


@cache
def _text(name: str) -> str:
    return resources.files("vigil.server.config").joinpath(f"builtin/{FILES[name]}").read_text()


def builtin_document(name: str) -> dict[str, Any] | None:
    """The document holding the built-in template `name`, or None when there is none by that name."""
    if name not in FILES:
        return None
    return yaml.safe_load(_text(name))


def builtin_names() -> list[str]:
    return list(FILES)
