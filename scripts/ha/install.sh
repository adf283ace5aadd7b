#!/bin/sh
# Install what the high-availability pair needs (Debian/Ubuntu): PostgreSQL 15 and
# pg_auto_failover (its CLI, pg_autoctl, and the monitor's extension). Idempotent: does nothing
# when pg_autoctl and the extension are there. Needs root (or sudo) for apt-get.
set -eu
PG_MAJOR=${PG_MAJOR:-15}
if command -v pg_autoctl >/dev/null 2>&1 \
  && [ -f "/usr/share/postgresql/$PG_MAJOR/extension/pgautofailover.control" ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q "postgresql-$PG_MAJOR" pg-auto-failover-cli \
  "postgresql-$PG_MAJOR-auto-failover"
