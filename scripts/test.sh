#!/usr/bin/env bash
# Installs everything the tests need and runs the whole suite:
#   Debian packages for the real peers (zabbix-agent: zabbix_agentd, zabbix_sender;
#   zabbix-proxy-sqlite3: zabbix_get; logrotate for the log rotation tests), PostgreSQL and Redis
#   started when not running,
#   Python dependencies in ./.venv, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "== $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v zabbix_sender >/dev/null || missing+=(zabbix-agent)
command -v zabbix_get >/dev/null || missing+=(zabbix-proxy-sqlite3)
command -v psql >/dev/null || missing+=(postgresql postgresql-client)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v logrotate >/dev/null || missing+=(logrotate)
command -v fping >/dev/null || missing+=(fping)  # pollers: icmpping
command -v prometheus-node-exporter >/dev/null || missing+=(prometheus-node-exporter)  # pollers: Prometheus items
{ [ -x /usr/sbin/snmpd ] && command -v snmptrap >/dev/null; } || missing+=(snmpd snmp)
[ -f /usr/sbin/zabbix-java-gateway.jar ] && command -v java >/dev/null \
  || missing+=(zabbix-java-gateway)  # pollers: JMX items through the real Java gateway
[ -x /usr/lib/nagios/plugins/check_tcp ] || missing+=(monitoring-plugins-basic)  # pollers: nagios items
command -v ipmi_sim >/dev/null || missing+=(openipmi)  # pollers: IPMI items against ipmi_sim
{ [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null; } || missing+=(openssh-server openssh-client)  # pollers: ssh.run
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v rabbitmq-server >/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null \
  || missing+=(rabbitmq-server)  # alerts: the Celery tests on an amqp:// broker
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null; as_root apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  say "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  say "starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 150); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.2; done
fi

say "the real zabbix_server 6.0, the oracle of tests/e2e/test_value_rules.py"
if ! bash tests/peers/zabbix_server/setup.sh; then
  echo "!! setting up zabbix_server failed (output above): tests/e2e/test_value_rules.py will fail until" \
       "bash tests/peers/zabbix_server/setup.sh succeeds"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
say "installing Vigil with its test dependencies into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import vigil.server, vigil.agent, sqlalchemy, psycopg, pytest" \
  || { echo "the .venv install is incomplete: see the pip output above"; exit 1; }

say "ruff"
.venv/bin/ruff check .
say "pytest"
# The suite waits on real processes far more than it computes: three workers on two cores (pytest-xdist;
# each test module stays on one worker, so its module-scoped peers start once). VIGIL_TEST_WORKERS=0: serial.
# The modules start longest first, in the order tests/conftest.py gives them from tests/scope_seconds.txt
# (--no-loadscope-reorder: not by their number of tests), so no long module starts last. Refresh that
# file with scripts/scope_seconds.py from a --durations=0 run when modules are added or change much.
workers=${VIGIL_TEST_WORKERS:-3}
parallel=()
[ "$workers" != 0 ] && parallel=(-n "$workers" --dist loadscope --no-loadscope-reorder)
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@"
