#!/usr/bin/env bash
# The local registry is seeded with the three busybox-based test images, each with the config
# its purpose needs (scripts/lib/stack.sh seed_registry).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/skiff-it-XXXXXX)
trap '"$here/infra.sh" stop "$dir"' EXIT
"$here/infra.sh" start "$dir" --registry
registry=$(grep ^REGISTRY= "$dir/infra.env" | cut -d= -f2)
fail=0
check() {  # image jq-expression expected
  local got
  got=$(skopeo inspect --tls-verify=false --config "docker://$registry/$1" | python3 -c "import json,sys; c=json.load(sys.stdin)['config']; print($2)")
  if [[ $got == "$3" ]]; then echo "ok   $1: $got"; else echo "FAIL $1: got '$got', want '$3'"; fail=1; fi
}
check skiff/hello:1 "' '.join(c['Cmd'])" "/bin/sh -c echo hello from skiff"
check skiff/httpd:1 "' '.join(c['Cmd'])" "/bin/httpd -f -p 80 -h /www"
check skiff/httpd:1 "','.join(c['ExposedPorts'])" "80/tcp"
check skiff/sleeper:1 "c['Cmd'][0]" "/bin/sh"
# The layer really holds busybox: pull it into an OCI layout and look.
skopeo copy -q --src-tls-verify=false "docker://$registry/skiff/hello:1" "oci:$dir/pulled:hello"
umoci unpack --image "$dir/pulled:hello" "$dir/unpacked" >/dev/null
if [[ -x $dir/unpacked/rootfs/bin/busybox && $("$dir/unpacked/rootfs/bin/echo" ok) == ok ]]; then
  echo "ok   hello rootfs runs busybox"
else
  echo "FAIL hello rootfs has no working busybox"; fail=1
fi
exit $fail
