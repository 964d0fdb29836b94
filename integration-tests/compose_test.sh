#!/usr/bin/env bash
# The docker-compose stack, checked without a Docker engine (none on CI machines):
# - `docker-compose config` accepts compose/docker-compose.yml, and refuses it without the secret;
# - every service built from this repository has its Dockerfile, whose build stage names real
#   CMake targets, whose COPY --from=build sources are files this build produced, whose other
#   COPY sources exist, whose runtime packages exist in Debian 12, and whose health check asks
#   the port the service's metrics listener is given (in the Dockerfile and in compose).
# usage: compose_test.sh <build dir>
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?build dir}
compose=$root/compose/docker-compose.yml
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

if SKIFF_SECRET_KEY=$(openssl rand -base64 32) docker-compose -f "$compose" config -q; then ok "docker-compose config"
else bad "docker-compose config refused compose/docker-compose.yml"; fi
if env -u SKIFF_SECRET_KEY docker-compose -f "$compose" config -q 2>/dev/null; then bad "config passed without SKIFF_SECRET_KEY"
else ok "config refuses a missing SKIFF_SECRET_KEY"; fi

resolved=$(SKIFF_SECRET_KEY=x docker-compose -f "$compose" config)
targets=$(ninja -C "$build" -t targets all 2>/dev/null | sed -n 's/^\([A-Za-z0-9_.-]*\): phony$/\1/p')
services=$(/usr/bin/python3 - "$resolved" <<'PY'
import sys, yaml
doc = yaml.safe_load(sys.argv[1])
for name, svc in doc["services"].items():
    dockerfile = (svc.get("build") or {}).get("dockerfile", "")
    listen = (svc.get("environment") or {}).get("SKIFF_METRICS_LISTEN", "")
    print(name, dockerfile or "-", listen or "-")
PY
)
built=0
while read -r name dockerfile listen; do
  [[ $dockerfile == - ]] && continue
  built=$((built + 1))
  file=$root/$dockerfile
  [[ -f $file ]] || { bad "$name: $dockerfile missing"; continue; }
  grep -q '^FROM debian:12 AS build' "$file" && grep -q '^FROM debian:12$' "$file" \
    && ok "$name: multi-stage on debian:12" || bad "$name: not a two-stage debian:12 build"
  for target in $(sed -n 's/.*cmake --build --preset ci --target \(.*\)$/\1/p' "$file"); do
    grep -qx "$target" <<<"$targets" && ok "$name: target $target" || bad "$name: no CMake target $target"
  done
  for source in $(sed -n 's|^COPY --from=build \(.*\) /usr/local/bin/$|\1|p' "$file"); do
    local_path=$build/${source#/src/build/ci/}
    [[ -x $local_path ]] && ok "$name: ships $(basename "$source")" || bad "$name: $source is not built ($local_path)"
  done
  while read -r src; do
    [[ -e $root/$src ]] && ok "$name: COPY $src" || bad "$name: COPY source $src missing"
  done < <(sed -n 's|^COPY \([^-][^ ]*\) /etc/.*|\1|p' "$file")
  runtime_packages=$(awk '/^FROM debian:12$/{rt=1} rt && /apt-get install/' "$file" |
    sed 's/.*--no-install-recommends//; s/\\//; s/&&.*//')
  for pkg in $runtime_packages; do
    apt-cache show "$pkg" >/dev/null 2>&1 || bad "$name: no Debian package $pkg"
  done
  ok "$name: runtime packages exist ($(wc -w <<<"$runtime_packages"))"
  health_port=$(sed -n 's|^HEALTHCHECK .*http://127.0.0.1:\([0-9]*\)/healthz.*|\1|p' "$file")
  env_port=$(sed -n 's|^ENV SKIFF_METRICS_LISTEN=.*:\([0-9]*\)$|\1|p' "$file")
  [[ -n $health_port && $health_port == "$env_port" ]] && ok "$name: health check on :$health_port" \
    || bad "$name: health check port '$health_port' is not the metrics port '$env_port'"
  if [[ $listen != - && ${listen##*:} != "$health_port" ]]; then
    bad "$name: compose moves metrics to $listen but the health check asks :$health_port"
  fi
done <<<"$services"
((built == 6)) && ok "six services built from this repository" || bad "$built services have a Dockerfile, want 6"
exit $fail
