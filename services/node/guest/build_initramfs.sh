#!/usr/bin/env bash
# Packs the microVM guest's initramfs: the agent as /init, busybox, the OCI runtime with the
# libraries it links, and the kernel modules the guest needs (virtio-mmio, virtio-serial,
# virtio-fs, virtio-net) for the kernel at KERNEL. The runtime is crun when installed (Debian's C
# implementation of runc's command line: under TCG it starts a container in a fraction of the
# time runc's two Go start-ups take), else runc; the guest calls it /bin/runc either way. LZ4
# compressed where lz4 is installed (see the end). Build time only; everything comes from this
# machine's Debian packages.
# usage: build_initramfs.sh AGENT KERNEL OUT
set -euo pipefail
agent=$1 kernel=$2 out=$3
release=$(basename "$kernel"); release=${release#vmlinuz-}
modules=/lib/modules/$release
[[ -d $modules ]] || { echo "no modules for $release in $modules" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,proc,sys,dev,run,tmp,sandbox,etc,lib/modules/skiff}
install -m 0755 "$agent" "$stage/init"
cp /bin/busybox "$stage/bin/busybox"
for applet in sh cat ls echo env id ps sleep true false uname mount hostname stty; do ln -s busybox "$stage/bin/$applet"; done
runc=$(command -v crun || command -v runc)
cp "$runc" "$stage/bin/runc"
for lib in $(ldd "$runc" | grep -o '/[^ ]*'); do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$stage/etc/passwd"
# A linker cache, so the runtime's libraries are found without probing each search directory.
echo /lib/x86_64-linux-gnu >"$stage/etc/ld.so.conf"
ldconfig -r "$stage"
# Modules with their dependencies first, from modules.dep.
wanted=(virtio_mmio virtio_console fuse virtiofs virtio_net)
declare -A added=()
order=()
add_module() {  # relative path in modules.dep
  local path=$1 dep
  [[ -n ${added[$path]:-} ]] && return
  for dep in $(grep "^$path:" "$modules/modules.dep" | cut -d: -f2); do add_module "$dep"; done
  added[$path]=1
  order+=("$path")
}
for name in "${wanted[@]}"; do
  path=$(grep -E "(^|/)$name\.ko:" "$modules/modules.dep" | cut -d: -f1 | head -1)
  [[ -n $path ]] || { echo "module $name not found for $release" >&2; exit 1; }
  add_module "$path"
done
: >"$stage/lib/modules/skiff/order"
# Without their appended signatures: the kernel (signatures not enforced) then skips hashing and
# RSA-checking each module, which under TCG costs more than the load itself. The kernel notes
# the unsigned modules as a taint; the initramfs is ours and built from Debian's own files.
strip_signature() {  # FILE: cut "<pkcs7><12-byte header>~Module signature appended~\n" off the end
  local file=$1 size sig_len
  size=$(stat -c %s "$file")
  [[ $(tail -c 28 "$file") == "~Module signature appended~" ]] || return 0
  sig_len=$(( $(od -An -tu1 -j $((size - 32)) -N4 "$file" | awk '{print ($1*16777216)+($2*65536)+($3*256)+$4}') ))
  truncate -s $((size - 28 - 12 - sig_len)) "$file"
}
for path in "${order[@]}"; do
  cp "$modules/$path" "$stage/lib/modules/skiff/"
  strip_signature "$stage/lib/modules/skiff/$(basename "$path")"
  basename "$path" >>"$stage/lib/modules/skiff/order"
done
(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --owner 0:0 --quiet) >"$out.cpio"
# LZ4 (the kernel's legacy frame format): under TCG the guest unpacks it faster than it reads the
# plain archive (measured: ~0.25 s less for 9 MB); gzip, xz and zstd all cost more than they save.
if command -v lz4 >/dev/null; then
  lz4 -l -9 -q -f "$out.cpio" "$out.tmp"
  rm "$out.cpio"
else
  mv "$out.cpio" "$out.tmp"
fi
mv "$out.tmp" "$out"
