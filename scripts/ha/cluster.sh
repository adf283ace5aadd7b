#!/bin/bash
# A PostgreSQL primary + synchronous standby with automatic failover by pg_auto_failover, on one
# machine (a monitor and two nodes on consecutive ports), for payengine's failover test and for
# trying HA locally. On real machines, run the same `pg_autoctl create` steps on each host
# (docs/operations.md "High availability").
#
#   scripts/ha/cluster.sh up DIR [BASE_PORT]  create and start: monitor on BASE_PORT (default
#                                              16500), nodes on BASE_PORT+1 and +2; prints the DSN
#   scripts/ha/cluster.sh dsn DIR             the multi-host DSN payengine uses
#   scripts/ha/cluster.sh state DIR           pg_autoctl show state
#   scripts/ha/cluster.sh primary DIR         the current primary's name (node1 or node2)
#   scripts/ha/cluster.sh kill-primary DIR    SIGKILL the primary's keeper, postmaster and backends
#                                              (a crashed machine); prints its name
#   scripts/ha/cluster.sh down DIR            stop everything and delete DIR
#
# Failover timing: the monitor checks nodes every second and calls one unhealthy after 3 s; a
# node that loses the monitor and its standby demotes itself after 3 s
# (timeout.network_partition_timeout), so the monitor may promote the standby after 5 s
# (primary_demote_timeout) without risking two primaries. Defaults are 20 s and 30 s.
# Installs its packages first (scripts/ha/install.sh). PostgreSQL refuses to run as root: as
# root, every pg_autoctl runs as the `postgres` system user.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
DATABASE=${HA_DATABASE:-payengine}
ACTION=${1:?usage: cluster.sh up|dsn|state|primary|kill-primary|down DIR [BASE_PORT]}
DIR=${2:?usage: cluster.sh $ACTION DIR}
BASE_PORT=${3:-16500}

as_pg() {
  local env=(env "PATH=$PG_BIN:$PATH" "XDG_CONFIG_HOME=$DIR/config" "XDG_DATA_HOME=$DIR/share")
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "${env[@]}" "$@"
  else
    "${env[@]}" "$@"
  fi
}

port_of() { cat "$DIR/$1.port"; }

monitor_uri() { echo "postgres://autoctl_node@127.0.0.1:$(port_of monitor)/pg_auto_failover?sslmode=disable"; }

# Run `pg_autoctl run` for $1 in its own session (so one kill takes its whole process group).
run_node() {
  local name=$1
  if [ "$(id -u)" -eq 0 ]; then
    setsid runuser -u postgres -- env "PATH=$PG_BIN:$PATH" "XDG_CONFIG_HOME=$DIR/config" \
      "XDG_DATA_HOME=$DIR/share" pg_autoctl run --pgdata "$DIR/$name" >>"$DIR/$name.log" 2>&1 &
  else
    setsid env "PATH=$PG_BIN:$PATH" "XDG_CONFIG_HOME=$DIR/config" "XDG_DATA_HOME=$DIR/share" \
      pg_autoctl run --pgdata "$DIR/$name" >>"$DIR/$name.log" 2>&1 &
  fi
  echo $! >"$DIR/$name.pgid"
}

monitor_sql() {
  psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port_of monitor)" -U postgres \
    -d pg_auto_failover -c "$1"
}

# Wait until the monitor reports node $1 in state $2 (at most $3 seconds).
wait_state() {
  local node=$1 state=$2 deadline=$((SECONDS + ${3:-120}))
  until [ "$(monitor_sql "SELECT reportedstate FROM pgautofailover.node WHERE nodename = '$node'" 2>/dev/null)" = "$state" ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: $node never reached $state" >&2
      tail -n 20 "$DIR/$node.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

primary() {
  monitor_sql "SELECT nodename FROM pgautofailover.node WHERE reportedstate IN ('primary', 'wait_primary', 'single') AND goalstate IN ('primary', 'wait_primary', 'single') ORDER BY nodeid LIMIT 1"
}

dsn() {
  echo "postgresql://postgres@127.0.0.1:$(port_of node1),127.0.0.1:$(port_of node2)/$DATABASE?target_session_attrs=read-write"
}

up() {
  "$HERE/install.sh"
  [ ! -e "$DIR" ] || { echo "cluster.sh: $DIR exists; run down first" >&2; exit 2; }
  mkdir -p "$DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres "$DIR"
  echo "$BASE_PORT" >"$DIR/monitor.port"
  echo $((BASE_PORT + 1)) >"$DIR/node1.port"
  echo $((BASE_PORT + 2)) >"$DIR/node2.port"
  as_pg pg_autoctl create monitor --pgdata "$DIR/monitor" --pgport "$BASE_PORT" \
    --pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl >>"$DIR/monitor.log" 2>&1
  run_node monitor
  local deadline=$((SECONDS + 60))
  until monitor_sql "SELECT 1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$DIR/monitor.log" >&2; exit 1; }
    sleep 0.3
  done
  monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_period = '1s'" >/dev/null
  monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_timeout = '1s'" >/dev/null
  monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1" >/dev/null
  monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_retry_delay = '500ms'" >/dev/null
  monitor_sql "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = '3s'" >/dev/null
  monitor_sql "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = '5s'" >/dev/null
  monitor_sql "SELECT pg_reload_conf()" >/dev/null
  for node in node1 node2; do
    as_pg pg_autoctl create postgres --pgdata "$DIR/$node" --pgport "$(port_of $node)" \
      --pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --listen 127.0.0.1 --name "$node" \
      --dbname "$DATABASE" --auth trust --no-ssl --monitor "$(monitor_uri)" >>"$DIR/$node.log" 2>&1
    as_pg pg_autoctl config set --pgdata "$DIR/$node" timeout.network_partition_timeout 3 \
      >>"$DIR/$node.log" 2>&1
    run_node "$node"
    if [ "$node" = node1 ]; then wait_state node1 single; fi
  done
  wait_state node2 secondary
  wait_state node1 primary
  dsn
}

kill_primary() {
  local name
  name=$(primary)
  [ -n "$name" ] || { echo "cluster.sh: no primary" >&2; exit 1; }
  kill_node "$name"
  echo "$name"
}

# SIGKILL node $1's process group (keeper, postmaster, backends), and its postmaster by its pid
# file in case it was started in another group.
kill_node() {
  local name=$1
  if [ -f "$DIR/$name.pgid" ]; then kill -KILL -- "-$(cat "$DIR/$name.pgid")" 2>/dev/null || true; fi
  local pid
  pid=$(head -n 1 "$DIR/$name/postmaster.pid" 2>/dev/null) || return 0
  # Only if that pid is still this node's postmaster (a stale file's pid may be reused).
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "-D $DIR/$name "; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

down() {
  for name in node1 node2 monitor; do kill_node "$name"; done
  rm -rf "$DIR"
}

case "$ACTION" in
  up) up ;;
  dsn) dsn ;;
  state) as_pg pg_autoctl show state --pgdata "$DIR/monitor" ;;
  primary) primary ;;
  kill-primary) kill_primary ;;
  down) down ;;
  *) echo "cluster.sh: unknown action $ACTION" >&2; exit 2 ;;
esac
