#!/usr/bin/env python3
"""Writes an OCI image layout with hand-made layers, for images umoci cannot make: hostile
layers (path traversal, symlink escape) and large random multi-layer images for benchmarks.

  make_oci_image.py DIR TAG hostile
  make_oci_image.py DIR TAG hostile-whiteout   (x -> /tmp/skiff-hostile-dir, then x/.wh.sentinel, one layer)
  make_oci_image.py DIR TAG random LAYERS MIB_PER_LAYER
  make_oci_image.py DIR TAG unique
Then: skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG
"""
import gzip, hashlib, io, json, os, sys, tarfile


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def tar_layer(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=1), hashlib.sha256(uncompressed).hexdigest()


def main():
    layout, tag, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    if kind == "hostile":
        layers = [tar_layer([("etc/ok", "file", b"fine\n"),
                             ("../../../../tmp/skiff-hostile-escape", "file", b"escaped\n")])]
    elif kind == "hostile-whiteout":
        # The layer plants a symlink to a host directory, then a whiteout beneath it: an
        # unpacker that follows paths would delete the host's file. (Across two layers the
        # whiteout is harmless: each layer is unpacked into a tree of its own.)
        layers = [tar_layer([("etc/ok", "file", b"fine\n"), ("x", "symlink", "/tmp/skiff-hostile-dir"),
                             ("x/.wh.sentinel", "file", b"")])]
    elif kind == "unique":
        layers = [tar_layer([("unique", "file", os.urandom(4096))])]
    else:
        count, mib = int(sys.argv[4]), int(sys.argv[5])
        layers = [tar_layer([(f"data/layer{i}/part{j}", "file", os.urandom(1 << 20)) for j in range(mib)])
                  for i in range(count)]
    descriptors, diff_ids = [], []
    for data, diff_id in layers:
        digest, size = blob(layout, data)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
        diff_ids.append("sha256:" + diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest, config_size = blob(layout, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": config_size},
                           "layers": descriptors}).encode()
    manifest_digest, manifest_size = blob(layout, manifest)
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                               "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as f:
        json.dump(index, f)


if __name__ == "__main__":
    main()
