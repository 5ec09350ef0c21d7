"""The host agent and the Zabbix wire protocol. Standard library and psutil only."""
