#!/usr/bin/env bash
# Starts or stops the infrastructure one integration test needs, in its own directory, on free
# loopback ports:  infra.sh start DIR [--registry]  |  infra.sh stop DIR
# `start` writes DIR/infra.env (KEY=VALUE lines) for the test to read.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/stack.sh"
cmd=$1 dir=$2
case $cmd in
start)
  mkdir -p "$dir"
  chmod 755 "$dir"  # mkdtemp makes it 0700; the postgres user must reach its cluster inside
  nats_port=$(free_port)
  start_nats "$dir/nats" "$nats_port"
  echo "$NATS_PID" >>"$dir/pids"
  pg_port=$(free_port)
  start_postgres "$dir/pg" "$pg_port"
  echo "$PG_PID" >>"$dir/pids"
  make_certs "$dir/certs"
  {
    echo "NATS_URL=nats://127.0.0.1:$nats_port"
    echo "NATS_PORT=$nats_port"
    echo "NATS_DIR=$dir/nats"
    echo "STORE_URL=postgresql://postgres@127.0.0.1:$pg_port/skiff"
    echo "CA=$dir/certs/ca.crt"
    echo "TLS_CERT=$dir/certs/server.crt"
    echo "TLS_KEY=$dir/certs/server.key"
  } >"$dir/infra.env"
  if [[ ${3:-} == --registry ]]; then :; else exit 0; fi
  {
    registry_port=$(free_port)
    start_registry "$dir/registry" "$registry_port"
    echo "$REGISTRY_PID" >>"$dir/pids"
    seed_registry "$dir/registry" "$registry_port"
    echo "REGISTRY=127.0.0.1:$registry_port" >>"$dir/infra.env"
  }
  ;;
stop)
  if [[ -f $dir/pids ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/pids"
    for _ in $(seq 100); do
      alive=0
      while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
      ((alive)) || break
      sleep 0.1
    done
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$dir/pids"
  fi
  # Whatever the tests left mounted in here (image roots, a node's guest-memory tmpfs), deepest first.
  awk '{print $5}' /proc/self/mountinfo | grep "^$dir/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
  ;;
*) echo "usage: infra.sh start|stop DIR [--registry]" >&2; exit 2 ;;
esac
