#!/usr/bin/env bash
# The whole stack on this one machine: its own mosquitto on a loopback port,
# central, one kiosk with emulated devices, and a scripted citizen.
# Pass --once to stop after the citizen has filed (prints a JSON summary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"
exec aps-demo "$@"
