# Sourced by setup.sh. Override any of these in the environment.
#   ZBX_SRV_ROOT  where zabbix-server-pgsql's .deb is unpacked   default /var/tmp/vigil-zabbix-server
#   ZBX_TEMPLATE  PostgreSQL database holding Zabbix 6.0's schema, cloned by each test
#                 (127.0.0.1:5432, role zabbix/zabbix)            default vigil_zbx_template
ZBX_SRV_ROOT=${ZBX_SRV_ROOT:-/var/tmp/vigil-zabbix-server}
ZBX_TEMPLATE=${ZBX_TEMPLATE:-vigil_zbx_template}
export ZBX_SRV_ROOT ZBX_TEMPLATE PGPASSWORD=zabbix
