"""Typed settings from VIGIL_* environment variables, built in main() and checked against bounds.

Every setting is listed in SETTINGS with its default, bounds and meaning; docs/settings.md is
checked against this list by a test, so a setting cannot exist undocumented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vigil.server.store.base import PgTimeouts


class SettingsError(ValueError):
    """A VIGIL_* variable with a bad value; the message names the variable and what it takes."""


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    default: str
    help: str
    lo: float | None = None
    hi: float | None = None


SETTINGS: tuple[Spec, ...] = (
    Spec("VIGIL_DATA_DIR", "./vigil-data",
         "Directory for the embedded SQLite store, logs and the local agent's files."),
    Spec("VIGIL_DATABASE_URL", "", "Store URL: empty for SQLite in the data directory, or postgresql://user@host:port/db."),
    Spec("VIGIL_LISTEN", "127.0.0.1:10051", "Address and port of the Zabbix-protocol ingest listener."),
    Spec("VIGIL_MAX_FRAME_BYTES", str(128 * 1024 * 1024), "Largest ZBXD frame accepted, in bytes.", 1024, 2**33),
    Spec("VIGIL_TIMEOUT", "3", "Seconds a client may take to send a whole frame before it is dropped, and that its "
         "values may wait for a history writer before the reply is `failed`.", 0.1, 300),
    Spec("VIGIL_MAX_BODY_BYTES", str(16 * 1024 * 1024),
         "Largest sender/agent data body accepted once decompressed, in bytes (checked while inflating); "
         "holds zabbix_sender's fullest batch, 250 values at Zabbix's 64 KiB text limit.", 1024, 2**33),
    Spec("VIGIL_MAX_REQUEST_VALUES", "10000",
         "Most values in one sender/agent data request; a request with more gets `failed` and nothing of it "
         "is stored. Keep it at least an agent's BufferSize.", 1, 10_000_000),
    Spec("VIGIL_MAX_CONNECTIONS", "1024",
         "Open ingest connections at most; while this many are open no more are accepted, so new ones wait "
         "in the kernel's listen backlog.", 1, 65536),
    Spec("VIGIL_BATCH_MAX_VALUES", "50000", "Most values written in one transaction.", 1, 10_000_000),
    Spec("VIGIL_HISTORY_WRITERS", "0", "History writer threads; 0: 1 on SQLite, 4 on PostgreSQL.", 0, 16),
    Spec("VIGIL_MAX_CLOCK_AHEAD", "600",
         "Seconds a value's clock may be ahead of the server's; later ones are refused.", 0, 2**31 - 1),
    Spec("VIGIL_MAX_CLOCK_AGE", "0",
         "Seconds a value's clock may be behind the server's; 0: the longest history retention of the items.",
         0, 2**31 - 1),
    Spec("VIGIL_CONFIG_REFRESH", "1", "Seconds between checks for configuration changes.", 0.05, 3600),
    Spec("VIGIL_HOUSEKEEPING_INTERVAL", "3600", "Seconds between housekeeper runs (retention).", 1, 86400),
    Spec("VIGIL_TRENDS_INTERVAL", "60", "Seconds between hourly-trend roll-ups.", 1, 3600),
    Spec("VIGIL_PG_CONNECT_TIMEOUT", "10", "Seconds to wait for a connection to PostgreSQL before the attempt fails, "
         "and for the network to acknowledge data sent on one before it counts as broken.", 1, 600),
    Spec("VIGIL_PG_STATEMENT_TIMEOUT", "300",
         "Seconds a PostgreSQL statement may run before it is cancelled; 0: no limit.", 0, 86400),
    Spec("VIGIL_PG_LOCK_TIMEOUT", "10",
         "Seconds a PostgreSQL statement may wait for a lock before it fails; 0: no limit.", 0, 3600),
    Spec("VIGIL_PG_DEFER_INDEX", "1",
         "1: the hour partitions of numeric history are indexed once the hour has closed, which halves "
         "PostgreSQL's CPU per value written, while a read of one item scans the values of the open hour "
         "(about 100 ms for 3.6 million values); 0: they are indexed when made, as before.", 0, 1),
    Spec("VIGIL_LOCAL_AGENT", "1", "1: `vigil up` starts a vigil-agent watching this machine; 0: it does not.", 0, 1),
    Spec("VIGIL_LOG_LEVEL", "info", "debug, info, warning or error."),
    Spec("VIGIL_TLS_CA_FILE", "", "CA certificate(s) that agents' and senders' certificates must be signed by "
         "(TLS with certificates, as Zabbix's TLSCAFile); needs VIGIL_TLS_CERT_FILE."),
    Spec("VIGIL_TLS_CRL_FILE", "", "Revoked certificates (Zabbix's TLSCRLFile); optional."),
    Spec("VIGIL_TLS_CERT_FILE", "", "The listener's certificate (chain); empty: the listener takes plain text "
         "only. Set with VIGIL_TLS_CA_FILE and VIGIL_TLS_KEY_FILE."),
    Spec("VIGIL_TLS_KEY_FILE", "", "The private key of VIGIL_TLS_CERT_FILE."),
    # --- pollers (server/pollers/) ---
    Spec("VIGIL_POLLERS", "100", "Polls (passive agent, simple, HTTP agent...) running at once at most, as Zabbix's "
         "StartPollers; 0: the server polls nothing.", 0, 10000),
    Spec("VIGIL_HTTP_POLLERS", "16", "Threads making HTTP agent requests at once at most.", 1, 1000),
    Spec("VIGIL_IPMI_POLLERS", "8", "Threads talking to BMCs for IPMI items at once at most (StartIPMIPollers); "
         "each BMC is asked one request at a time.", 1, 1000),
    Spec("VIGIL_PINGERS", "4", "fping processes for icmpping items running at once at most (StartPingers).", 1, 1000),
    Spec("VIGIL_UNREACHABLE_PERIOD", "45", "Seconds of network errors after which an interface is unavailable "
         "(UnreachablePeriod).", 1, 3600),
    Spec("VIGIL_UNREACHABLE_DELAY", "15", "Seconds an unreachable interface's items wait before it is tried again "
         "(UnreachableDelay).", 1, 3600),
    Spec("VIGIL_UNAVAILABLE_DELAY", "60", "Seconds between tries of an unavailable interface (UnavailableDelay).",
         1, 3600),
    Spec("VIGIL_SSL_CA_FILE", "", "CA certificates HTTP agent items with verify_peer check servers against "
         "(Zabbix's SSLCALocation); empty: the system's."),
    Spec("VIGIL_FPING", "", "Path of fping for icmpping items (FpingLocation); empty: fping on PATH or in /usr/sbin."),
    Spec("VIGIL_JAVA_GATEWAY", "", "host:port of the Zabbix Java gateway JMX items are read through (JavaGateway and "
         "JavaGatewayPort; port 10052 when left out); empty: JMX items are not supported."),
    Spec("VIGIL_JAVA_POLLERS", "5", "Requests to the Java gateway at once at most (StartJavaPollers); keep it at or "
         "below the gateway's START_POLLERS.", 1, 1000),
    Spec("VIGIL_NAGIOS_PLUGINS", "/usr/lib/nagios/plugins", "Directory the plugins of nagios items are run from "
         "(Debian's monitoring-plugins); a key cannot name a file outside it."),
    Spec("VIGIL_EXTERNAL_SCRIPTS", "", "Directory the scripts of external items are run from (ExternalScripts); "
         "empty: external items are not supported."),
    Spec("VIGIL_SNMPTRAP_LISTEN", "", "UDP address and port the SNMP trap receiver listens on, e.g. 0.0.0.0:162 or "
         "127.0.0.1:1162; empty: no trap receiver. Traps go to the snmptrap[regexp] and snmptrap.fallback items of "
         "the host whose SNMP interface address sent them (needs VIGIL_POLLERS above 0)."),
    Spec("VIGIL_SNMPTRAP_COMMUNITIES", "public", "SNMPv1/v2c communities whose traps are accepted, separated by "
         "commas; traps of other communities are logged and dropped. Empty: no v1/v2c traps."),
    Spec("VIGIL_SNMPTRAP_USERS", "", "SNMPv3 users traps are accepted from, as snmptrapd's createUser lines "
         "separated by `;`: `-e ENGINEID NAME [AUTH AUTHPASS [PRIV PRIVPASS]]`, e.g. "
         "`-e 0x8000000001020304 monitor SHA-256 'auth pass' AES 'priv pass'`. ENGINEID is the sending device's; "
         "AUTH MD5, SHA, SHA-224, SHA-256, SHA-384 or SHA-512; PRIV DES, AES, AES-192 or AES-256; the level follows "
         "from what is given. Traps of unknown users or failing authentication are logged and dropped."),
    Spec("VIGIL_SSH_KEY_LOCATION", "", "Directory of the key files that ssh items with public-key authentication "
         "name (SSHKeyLocation); empty: ssh-keys in VIGIL_DATA_DIR. Host keys seen are kept in "
         "VIGIL_DATA_DIR/ssh_known_hosts."),
    # --- trigger engine (issue 12) ---
    Spec("VIGIL_TRIGGER_TIMER", "5", "Seconds between evaluations of time-based triggers (nodata, fuzzytime, "
         "time periods) when no value arrives for them.", 0.1, 3600),
    Spec("VIGIL_ACK_POLL", "1", "Seconds between the trigger engine's looks for new problem updates "
         "(acknowledgements, closes, severity changes written by `vigil ack` or the web UI).", 0.1, 3600),
    Spec("VIGIL_VALUE_CACHE_SIZE", "2000000", "Values the trigger engine's value cache holds at most, over all "
         "items (about 100 bytes each); past it the least recently used items are read from the store again.",
         1000, 1_000_000_000),
    Spec("VIGIL_AGENT_UNREACHABLE", "360", "Seconds without an active checks request or data from a host's active "
         "agent before the host is unreachable (an internal event); 3 times the agent's 120 s refresh.", 1, 86400),
    # Proxies (server/ingest/proxy.py): passive proxies the server connects to
    Spec("VIGIL_PROXY_POLL_INTERVAL", "1", "Seconds between two `proxy data` requests to each passive proxy "
         "(Zabbix's ProxyDataFrequency).", 0.05, 3600),
    Spec("VIGIL_PROXY_CONFIG_FREQUENCY", "3600", "Seconds between two pushes of its configuration to each passive "
         "proxy (Zabbix's ProxyConfigFrequency); a configuration change is pushed at the next poll anyway.",
         1, 604800),
    Spec("VIGIL_PROXY_GROUP_INTERVAL", "5", "Seconds between two balancings of the proxy groups: hosts of a proxy "
         "silent for longer than its group's failover_delay move to the online ones.", 0.2, 3600),
    Spec("VIGIL_UPSTREAM", "", "Site servers: HOST:PORT of a central Vigil server this server forwards everything it "
         "stores to (through `proxy data`, buffered in VIGIL_DATA_DIR/site-outbox.db); empty: none. Needs VIGIL_SITE."),
    Spec("VIGIL_SITE", "", "Site servers: this site's name, declared on the central server as an active proxy; its "
         "hosts appear there in host group Site/NAME."),
    # Alert delivery (alerts/: `vigil worker`, and the in-process pool of `vigil up`)
    Spec("VIGIL_BROKER_URL", "redis://127.0.0.1:6379/0",
         "Celery broker of alert delivery: redis://HOST:PORT/DB or amqp://USER:PASSWORD@HOST:PORT/VHOST (RabbitMQ)."),
    Spec("VIGIL_ALERT_REDELIVERY", "30",
         "Seconds after which a message held by a worker that died goes to another worker (Redis's visibility "
         "time-out; RabbitMQ requeues at once). Keep it above the longest media type time-out (tries are cut off at "
         "80 % of it).", 2, 86400),
    Spec("VIGIL_ALERT_QUEUE", "vigil-alerts", "Broker queue of the alert delivery tasks."),
    Spec("VIGIL_ALERT_THREADS", "4", "Threads delivering alerts in `vigil up`'s in-process pool.", 1, 64),
    Spec("VIGIL_ALERT_SCRIPTS_PATH", "",
         "Directory of the alert scripts that script media types name; empty: alertscripts in VIGIL_DATA_DIR."),
    # --- escalator: actions, escalations, remote commands (issue 12) ---
    Spec("VIGIL_ESCALATOR_INTERVAL", "1", "Seconds between the escalator's looks for due escalation steps (a new "
         "event or problem update wakes it at once).", 0.05, 60),
    Spec("VIGIL_MAINTENANCE_RECHECK", "60", "Seconds between an asleep escalation's looks at whether its hosts' "
         "maintenance is over.", 1, 3600),
    Spec("VIGIL_REMOTE_COMMAND_TIMEOUT", "30", "Seconds a remote command of an action may run on the server, or its "
         "agent may take to answer, before it is killed and logged as failed.", 1, 3600),
    Spec("VIGIL_PROXY_COMMAND_TTL", "600", "Seconds a remote command for a host monitored by a proxy may wait for "
         "the proxy's result before its alert fails (Zabbix's task ttl, 10 minutes).", 1, 86400),
    # --- web UI and JSON API ---
    Spec("VIGIL_WEB_LISTEN", "127.0.0.1:8080",
         "Address and port of the web UI and JSON API (`vigil web`, `vigil up`)."),
    Spec("VIGIL_SECRET_KEY", "", "Key that signs session cookies; empty: a key generated once into "
         "VIGIL_DATA_DIR/secret-key (mode 0600). Set the same value on every `vigil web` behind one address."),
    Spec("VIGIL_LOGIN_ATTEMPTS", "5", "Failed sign-ins in a row that block an account (Zabbix: 5).", 1, 32),
    Spec("VIGIL_LOGIN_BLOCK", "30", "Seconds a blocked account stays blocked (Zabbix: 30 s).", 1, 3600),
    Spec("VIGIL_WEB_COOKIE_SECURE", "0", "1: the session cookie is sent over HTTPS only (set it when the UI is "
         "served through HTTPS); 0: also over plain HTTP, as on 127.0.0.1.", 0, 1),
    Spec("VIGIL_WEB_THREADS", "8", "Threads answering web requests in `vigil web` and `vigil up`.", 1, 256),
)

BROKER_SCHEMES = ("redis://", "rediss://", "redis+socket://", "amqp://", "amqps://", "pyamqp://")


def parse_address(text: str, name: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise SettingsError(f"{name}={text!r}: expected HOST:PORT with a port from 1 to 65535")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    listen: tuple[str, int]
    web_listen: tuple[str, int]
    max_frame_bytes: int
    timeout: float
    max_connections: int
    max_body_bytes: int
    max_request_values: int
    batch_max_values: int
    history_writers: int
    max_clock_ahead: int
    max_clock_age: int
    config_refresh: float
    housekeeping_interval: float
    trends_interval: float
    pg_connect_timeout: float
    pg_statement_timeout: float
    pg_lock_timeout: float
    pg_defer_index: bool
    local_agent: bool
    log_level: str
    tls_ca_file: str = ""
    tls_crl_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # pollers
    pollers: int = 100
    http_pollers: int = 16
    pingers: int = 4
    ipmi_pollers: int = 8
    snmptrap_listen: tuple[str, int] | None = None
    snmptrap_communities: tuple[str, ...] = ("public",)
    snmptrap_users: str = ""
    unreachable_period: int = 45
    unreachable_delay: int = 15
    unavailable_delay: int = 60
    ssl_ca_file: str = ""
    fping: str = ""
    java_gateway: str = ""
    java_pollers: int = 5
    nagios_plugins: str = "/usr/lib/nagios/plugins"
    external_scripts: str = ""
    ssh_key_location: str = ""
    trigger_timer: float = 5.0
    ack_poll: float = 1.0
    value_cache_size: int = 2_000_000
    agent_unreachable: int = 360
    broker_url: str = "redis://127.0.0.1:6379/0"
    alert_redelivery: float = 30.0
    alert_queue: str = "vigil-alerts"
    alert_threads: int = 4
    alert_scripts_path: Path = Path("vigil-data/alertscripts")
    escalator_interval: float = 1.0
    maintenance_recheck: int = 60
    remote_command_timeout: float = 30.0
    proxy_command_ttl: int = 600
    secret_key: str = ""
    login_attempts: int = 5
    login_block: int = 30
    web_cookie_secure: bool = False
    web_threads: int = 8
    proxy_poll_interval: float = 1.0
    proxy_config_frequency: float = 3600.0
    proxy_group_interval: float = 5.0
    upstream: tuple[str, int] | None = None  # VIGIL_UPSTREAM: the central server of a site server
    site: str = ""  # VIGIL_SITE

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def pg_timeouts(self) -> PgTimeouts:
        from vigil.server.store.base import PgTimeouts

        return PgTimeouts(self.pg_connect_timeout, self.pg_statement_timeout, self.pg_lock_timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        raw = {s.name: env.get(s.name, s.default) for s in SETTINGS}

        def num(name: str, kind: type = float) -> float:
            spec = next(s for s in SETTINGS if s.name == name)
            try:
                v = kind(raw[name])
            except ValueError:
                raise SettingsError(f"{name}={raw[name]!r}: expected a {kind.__name__}") from None
            if (spec.lo is not None and v < spec.lo) or (spec.hi is not None and v > spec.hi):
                raise SettingsError(f"{name}={raw[name]!r}: must be between {spec.lo:g} and {spec.hi:g}")
            return v

        data_dir = Path(raw["VIGIL_DATA_DIR"]).expanduser()
        url = raw["VIGIL_DATABASE_URL"].strip() or f"sqlite:///{(data_dir / 'vigil.db').absolute()}"
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError(f"VIGIL_DATABASE_URL={url!r}: expected sqlite:///PATH or postgresql://…")
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        level = raw["VIGIL_LOG_LEVEL"].lower()
        if level not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"VIGIL_LOG_LEVEL={level!r}: expected debug, info, warning or error")
        tls = {name: raw[f"VIGIL_{name.upper()}"].strip() for name in
               ("tls_ca_file", "tls_crl_file", "tls_cert_file", "tls_key_file")}
        if tls["tls_cert_file"]:
            for name in ("tls_ca_file", "tls_key_file"):
                if not tls[name]:
                    raise SettingsError(f"VIGIL_TLS_CERT_FILE is set but VIGIL_{name.upper()} is not: "
                                        "TLS needs the CA file, the certificate and its key")
        else:
            for name in ("tls_ca_file", "tls_crl_file", "tls_key_file"):
                if tls[name]:
                    raise SettingsError(f"VIGIL_{name.upper()} is set but VIGIL_TLS_CERT_FILE is not")
        broker = raw["VIGIL_BROKER_URL"].strip()
        if not broker.startswith(BROKER_SCHEMES):
            raise SettingsError(f"VIGIL_BROKER_URL={broker!r}: expected redis://HOST:PORT/DB or "
                                "amqp://USER:PASSWORD@HOST:PORT/VHOST")
        queue = raw["VIGIL_ALERT_QUEUE"].strip()
        if not queue or any(c.isspace() for c in queue):
            raise SettingsError(f"VIGIL_ALERT_QUEUE={queue!r}: expected a queue name without spaces")
        scripts = raw["VIGIL_ALERT_SCRIPTS_PATH"].strip()
        values = dict(
            **tls,
            broker_url=broker,
            alert_redelivery=num("VIGIL_ALERT_REDELIVERY"),
            alert_queue=queue,
            alert_threads=int(num("VIGIL_ALERT_THREADS", int)),
            alert_scripts_path=Path(scripts).expanduser() if scripts else data_dir / "alertscripts",
            data_dir=data_dir,
            database_url=url,
            listen=parse_address(raw["VIGIL_LISTEN"], "VIGIL_LISTEN"),
            web_listen=parse_address(raw["VIGIL_WEB_LISTEN"], "VIGIL_WEB_LISTEN"),
            max_frame_bytes=int(num("VIGIL_MAX_FRAME_BYTES", int)),
            timeout=num("VIGIL_TIMEOUT"),
            max_connections=int(num("VIGIL_MAX_CONNECTIONS", int)),
            max_body_bytes=int(num("VIGIL_MAX_BODY_BYTES", int)),
            max_request_values=int(num("VIGIL_MAX_REQUEST_VALUES", int)),
            batch_max_values=int(num("VIGIL_BATCH_MAX_VALUES", int)),
            history_writers=int(num("VIGIL_HISTORY_WRITERS", int)) or (1 if url.startswith("sqlite") else 4),
            max_clock_ahead=int(num("VIGIL_MAX_CLOCK_AHEAD", int)),
            max_clock_age=int(num("VIGIL_MAX_CLOCK_AGE", int)),
            config_refresh=num("VIGIL_CONFIG_REFRESH"),
            housekeeping_interval=num("VIGIL_HOUSEKEEPING_INTERVAL"),
            trends_interval=num("VIGIL_TRENDS_INTERVAL"),
            pg_connect_timeout=num("VIGIL_PG_CONNECT_TIMEOUT"),
            pg_statement_timeout=num("VIGIL_PG_STATEMENT_TIMEOUT"),
            pg_lock_timeout=num("VIGIL_PG_LOCK_TIMEOUT"),
            pg_defer_index=bool(num("VIGIL_PG_DEFER_INDEX", int)),
            local_agent=bool(num("VIGIL_LOCAL_AGENT", int)),
            log_level=level,
            escalator_interval=num("VIGIL_ESCALATOR_INTERVAL"),
            maintenance_recheck=int(num("VIGIL_MAINTENANCE_RECHECK", int)),
            remote_command_timeout=num("VIGIL_REMOTE_COMMAND_TIMEOUT"),
            proxy_command_ttl=int(num("VIGIL_PROXY_COMMAND_TTL", int)),
            trigger_timer=num("VIGIL_TRIGGER_TIMER"),
            ack_poll=num("VIGIL_ACK_POLL"),
            value_cache_size=int(num("VIGIL_VALUE_CACHE_SIZE", int)),
            agent_unreachable=int(num("VIGIL_AGENT_UNREACHABLE", int)),
        )
        values.update(  # pollers
            pollers=int(num("VIGIL_POLLERS", int)), http_pollers=int(num("VIGIL_HTTP_POLLERS", int)),
            pingers=int(num("VIGIL_PINGERS", int)),
            ipmi_pollers=int(num("VIGIL_IPMI_POLLERS", int)),
            unreachable_period=int(num("VIGIL_UNREACHABLE_PERIOD", int)),
            unreachable_delay=int(num("VIGIL_UNREACHABLE_DELAY", int)),
            unavailable_delay=int(num("VIGIL_UNAVAILABLE_DELAY", int)),
            ssl_ca_file=raw["VIGIL_SSL_CA_FILE"].strip(), fping=raw["VIGIL_FPING"].strip(),
            java_gateway=java_gateway(raw["VIGIL_JAVA_GATEWAY"]), java_pollers=int(num("VIGIL_JAVA_POLLERS", int)),
            nagios_plugins=raw["VIGIL_NAGIOS_PLUGINS"].strip(), external_scripts=raw["VIGIL_EXTERNAL_SCRIPTS"].strip(),
            snmptrap_listen=parse_address(raw["VIGIL_SNMPTRAP_LISTEN"].strip(), "VIGIL_SNMPTRAP_LISTEN")
            if raw["VIGIL_SNMPTRAP_LISTEN"].strip() else None,
            snmptrap_communities=tuple(c.strip() for c in raw["VIGIL_SNMPTRAP_COMMUNITIES"].split(",") if c.strip()),
            snmptrap_users=raw["VIGIL_SNMPTRAP_USERS"],
            ssh_key_location=raw["VIGIL_SSH_KEY_LOCATION"].strip(),
            secret_key=raw["VIGIL_SECRET_KEY"],
            login_attempts=int(num("VIGIL_LOGIN_ATTEMPTS", int)),
            login_block=int(num("VIGIL_LOGIN_BLOCK", int)),
            web_cookie_secure=bool(num("VIGIL_WEB_COOKIE_SECURE", int)),
            web_threads=int(num("VIGIL_WEB_THREADS", int)),
            proxy_poll_interval=num("VIGIL_PROXY_POLL_INTERVAL"),
            proxy_config_frequency=num("VIGIL_PROXY_CONFIG_FREQUENCY"),
            proxy_group_interval=num("VIGIL_PROXY_GROUP_INTERVAL"),
            upstream=parse_address(raw["VIGIL_UPSTREAM"].strip(), "VIGIL_UPSTREAM")
            if raw["VIGIL_UPSTREAM"].strip() else None,
            site=site_name(raw["VIGIL_SITE"], bool(raw["VIGIL_UPSTREAM"].strip())),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def site_name(text: str, upstream: bool) -> str:
    """VIGIL_SITE: required with VIGIL_UPSTREAM, meaningless without it."""
    name = text.strip()
    if upstream and not name:
        raise SettingsError("VIGIL_SITE: required when VIGIL_UPSTREAM is set (the site's proxy name on the central)")
    if name and not upstream:
        raise SettingsError(f"VIGIL_SITE={name!r}: set VIGIL_UPSTREAM too (HOST:PORT of the central server)")
    if len(name) > 128 or "/" in name:
        raise SettingsError(f"VIGIL_SITE={name[:140]!r}: at most 128 characters, without '/'")
    return name


def java_gateway(text: str) -> str:
    """VIGIL_JAVA_GATEWAY as host:port (10052 when no port is given); '' stays ''."""
    text = text.strip()
    if not text:
        return ""
    host, sep, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not sep:
        host, port = text, "10052"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"VIGIL_JAVA_GATEWAY: {text!r} is not host:port (e.g. 127.0.0.1:10052)")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
