#!/bin/bash
# Make the real zabbix_server 6.0 (Debian 12's zabbix-server-pgsql) runnable for the tests that
# use it as an oracle, WITHOUT installing its package: it conflicts in dpkg with
# zabbix-proxy-sqlite3, which brings zabbix_get. So: download the .deb, unpack it under
# $ZBX_SRV_ROOT, install only its library dependencies, and load Zabbix's schema into the
# template database $ZBX_TEMPLATE that each test clones. Idempotent: a second run does nothing.
# The tests start and stop the server themselves (tests/peers/zabbix_server/peer.py).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/env.sh"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
BIN="$ZBX_SRV_ROOT/usr/sbin/zabbix_server"
mkdir -p "$ZBX_SRV_ROOT"
if [ ! -x "$BIN" ] || ! "$BIN" -V >/dev/null 2>&1; then
  cd "$ZBX_SRV_ROOT"
  if ! ls zabbix-server-pgsql_*.deb >/dev/null 2>&1; then
    apt-get download zabbix-server-pgsql >/dev/null 2>&1 \
      || { as_root apt-get update -qq >/dev/null; apt-get download zabbix-server-pgsql >/dev/null; }
  fi
  deb=$(ls zabbix-server-pgsql_*.deb | head -1)
  deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/(.*//; s/|.*//; s/ //g' \
         | grep -v -e '^ucf$' -e '^adduser$' -e '^lsb-base$' -e '^$')
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q -o DPkg::Lock::Timeout=300 $deps postgresql-client >/dev/null
  dpkg-deb -x "$deb" "$ZBX_SRV_ROOT"
  cd - >/dev/null
fi
"$BIN" -V >/dev/null || { echo "$BIN does not run"; exit 1; }
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not answering on 127.0.0.1:5432"; exit 1; }
q() { psql -X -h 127.0.0.1 -U postgres -tAq -c "$1"; }
zq() { psql -X -h 127.0.0.1 -U zabbix -d "$ZBX_TEMPLATE" -v ON_ERROR_STOP=1 -tAq "$@"; }
[ "$(q "select 1 from pg_roles where rolname='zabbix'")" = 1 ] || q "create role zabbix login createdb password 'zabbix'"
q "alter role zabbix createdb" >/dev/null
if [ "$(q "select count(*) from pg_database where datname='$ZBX_TEMPLATE'")" = 1 ] \
   && [ "$(zq -c "select count(*) from pg_tables where tablename='dbversion'")" = 1 ] \
   && [ "$(zq -c "select count(*) from dbversion")" = 1 ]; then
  :
else
  # A half-loaded template (an earlier run that was stopped) is made again from scratch.
  q "drop database if exists $ZBX_TEMPLATE with (force)"
  q "create database $ZBX_TEMPLATE owner zabbix encoding 'UTF8' template template0"
  for f in schema images data; do zcat "$ZBX_SRV_ROOT/usr/share/zabbix-server-pgsql/$f.sql.gz" | zq >/dev/null; done
  zq -c "update hosts set status = 1 where host = 'Zabbix server'"   # else it polls 127.0.0.1:10050
fi
echo "zabbix_server $("$BIN" -V | head -1 | awk '{print $NF}') ready: $BIN, template database $ZBX_TEMPLATE"
