# Shell helpers that start Skiff's infrastructure as plain processes (no systemd):
# nats-server with JetStream, a Postgres cluster in a directory, a docker-registry seeded with
# busybox-based test images, and a dev CA. Sourced by scripts/up and the integration tests.

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {  # host port seconds
  local deadline=$((SECONDS + ${3:-30}))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "timed out waiting for $1:$2" >&2; return 1; }
    sleep 0.1
  done
}

# Runs a command as the postgres user when we are root (initdb and postgres refuse root).
as_postgres() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_nats() {  # dir port -> sets NATS_PID
  mkdir -p "$1"
  nats-server -js -a 127.0.0.1 -p "$2" -sd "$1/jetstream" >"$1/nats.log" 2>&1 &
  NATS_PID=$!
  wait_for_port 127.0.0.1 "$2" 30
}

start_postgres() {  # dir port -> sets PG_PID; creates the cluster on first use
  local dir=$1 port=$2
  mkdir -p "$dir"
  [[ $(id -u) == 0 ]] && chown postgres "$dir"
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
  fi
  as_postgres "$PG_BIN/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
    -c fsync=on -c max_connections=200 ${SKIFF_PG_EXTRA_ARGS:-} >"$dir/postgres.log" 2>&1 &
  PG_PID=$!
  wait_for_port 127.0.0.1 "$port" 60
  until as_postgres "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; do sleep 0.1; done
  # runuser does not pass signals on: stop the postmaster itself.
  PG_PID=$(head -n1 "$dir/data/postmaster.pid")
  as_postgres psql -q -h 127.0.0.1 -p "$port" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='skiff'" \
    | grep -q 1 || as_postgres psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE skiff" >/dev/null
}

start_registry() {  # dir port [htpasswd-file] -> sets REGISTRY_PID
  mkdir -p "$1/data"
  local auth=""
  [[ -n ${3:-} ]] && auth="auth: {htpasswd: {realm: skiff-test, path: $3}}"
  cat >"$1/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $1/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$2}
$auth
YAML
  docker-registry serve "$1/config.yml" >"$1/registry.log" 2>&1 &
  REGISTRY_PID=$!
  wait_for_port 127.0.0.1 "$2" 30
}

# Builds three OCI images from busybox-static with umoci and pushes them with skopeo:
#   skiff/hello:1    prints a line and exits 0
#   skiff/httpd:1    serves /www on port 80 with busybox httpd
#   skiff/sleeper:1  runs until SIGTERM
seed_registry() {  # workdir registry-port
  local work=$1 port=$2 layout=$1/oci
  rm -rf "$layout" "$work/bundle"
  umoci init --layout "$layout"
  umoci new --image "$layout:base"
  umoci unpack --image "$layout:base" "$work/bundle" >/dev/null
  local root=$work/bundle/rootfs
  mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh echo cat ls sleep httpd env hostname id ps true false wget nc date stty nslookup ip; do
    ln -sf busybox "$root/bin/$applet"
  done
  echo '<h1>Hello from Skiff</h1>' >"$root/www/index.html"
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  umoci repack --image "$layout:busybox" "$work/bundle" >/dev/null
  local c=(umoci config --image)
  "${c[@]}" "$layout:busybox" --tag hello --config.env PATH=/bin \
    --config.cmd /bin/sh --config.cmd -c --config.cmd 'echo hello from skiff'
  "${c[@]}" "$layout:busybox" --tag httpd --config.env PATH=/bin --config.exposedports 80/tcp \
    --config.cmd /bin/httpd --config.cmd -f --config.cmd -p --config.cmd 80 --config.cmd -h --config.cmd /www
  "${c[@]}" "$layout:busybox" --tag sleeper --config.env PATH=/bin \
    --config.cmd /bin/sh --config.cmd -c --config.cmd 'trap "exit 0" TERM; while true; do sleep 1; done'
  for image in hello httpd sleeper; do
    skopeo copy -q --dest-tls-verify=false "oci:$layout:$image" "docker://127.0.0.1:$port/skiff/$image:1"
  done
  rm -rf "$work/bundle"
}

# A dev CA and a server certificate for 127.0.0.1 and localhost.
make_certs() {  # dir
  local dir=$1
  mkdir -p "$dir"
  [[ -f $dir/server.crt ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Skiff dev CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
    -extfile "$dir/ext.cnf" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir"/*.key
}
