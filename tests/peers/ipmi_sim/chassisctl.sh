#!/bin/sh
# ipmi_sim chassis_control helper (protocol as in OpenIPMI's example ipmi_sim_chassiscontrol):
#   chassisctl.sh <mc> get power|boot ...   -> prints "power:<0|1>" ...
#   chassisctl.sh <mc> set power <0|1> | reset 1 | boot <x> | identify <i> <force>
# Power state is kept in the power file beside this script (the test's directory) (starts "1" = on). No real hardware is touched.
STATE=$(cd "$(dirname "$0")" && pwd)
dev=$1; op=$2; shift 2 || exit 1
case $op in
  get)
    for p in "$@"; do
      case $p in
        power) echo "power:$(cat "$STATE/power" 2>/dev/null || echo 1)" ;;
        boot)  echo "boot:$(cat "$STATE/boot" 2>/dev/null || echo default)" ;;
        *) echo "Invalid parameter: $p"; exit 1 ;;
      esac
    done ;;
  set)
    while [ $# -gt 0 ]; do
      p=$1; v=${2:-}; shift 2 || { echo "No value for $p"; exit 1; }
      case $p in
        power) echo "$v" > "$STATE/power" ;;
        reset) : ;;
        boot)  echo "$v" > "$STATE/boot" ;;
        identify) shift 1 2>/dev/null || true ;;
        *) echo "Invalid parameter: $p"; exit 1 ;;
      esac
    done ;;
  check) exit 1 ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
