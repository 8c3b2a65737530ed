#!/usr/bin/env bash
# The whole test run: lint, types, then the test suite (slow fault-injection
# runs included; pass -m 'not slow' to skip them locally).
set -euo pipefail
cd "$(dirname "$0")/.."
# Test-only services (the demo needs neither): the PostgreSQL store's tests use the machine's
# PostgreSQL on 127.0.0.1:5432 (user postgres, no password; or set APS_TEST_PG_DSN), each in
# a database of its own; the clustered-broker tests start a private 3-node RabbitMQ from
# Debian's rabbitmq-server (only its binaries: never the machine's broker on 5672).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test: installing ${need_apt[*]} with apt-get" >&2
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${need_apt[@]}"
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  for v in /etc/postgresql/*; do
    [ -d "$v/main" ] && as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start || true
  done
fi
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== pytest" && pytest "$@"
