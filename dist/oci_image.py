"""The filter's .wasm as an OCI image that Istio's WasmPlugin and Envoy
Gateway's EnvoyExtensionPolicy pull (`url: oci://...`).

Both fetch an image with go-containerregistry and accept three shapes; this
writes the one that is also a plain OCI image, the Wasm image spec's *compat*
variant: an OCI image manifest whose single layer
(`application/vnd.oci.image.layer.v1.tar+gzip`) is a tar holding `plugin.wasm`,
annotated `module.wasm.image/variant: compat`. Any registry and any OCI tool
(skopeo, crane, oras, docker) copies it as it is; the other shape (the *oci*
variant, with `application/vnd.module.wasm.*` media types) is refused by
registries that take only image media types.

Everything is deterministic: the same .wasm gives the same bytes, so the same
manifest digest, which is what Istio's and Envoy Gateway's `sha256` field
checks for an image.

Writes an OCI image layout (a directory: `oci-layout`, `index.json`,
`blobs/sha256/...`) whose one manifest is tagged with `tag`, and the same
layout as a tar (what `skopeo copy oci-archive:FILE:TAG ...` reads).
"""

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# The name Istio and Envoy Gateway look for in a compat image's layer.
WASM_NAME = "plugin.wasm"
VARIANT_ANNOTATION = "module.wasm.image/variant"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(members):
    """A ustar archive of (name, bytes or None for a directory, mode), owned
    by root, dated the epoch: nothing of the machine that built it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:  # a directory
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _json(value):
    # Compact and key-sorted: the digest depends only on the content.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type, data, annotations=None):
    descriptor = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        descriptor["annotations"] = annotations
    return descriptor


class Image:
    """What `write_layout` made: the manifest's digest (`sha256:...`, what a
    registry reports and Istio's `sha256` checks, without the prefix) and
    the blobs by role."""

    def __init__(self, manifest, config, layer):
        self.manifest = manifest
        self.config = config
        self.layer = layer
        self.digest = sha256_digest(manifest)


def build_image(wasm, *, title, version, description, license_id):
    """The manifest, config and layer blobs (bytes) for a .wasm's bytes."""
    layer_tar = _tar([(WASM_NAME, wasm, 0o644)])
    # gzip with no name and mtime 0, so the blob is the same on every build.
    layer = gzip.compress(layer_tar, compresslevel=9, mtime=0)
    config = _json({
        # GOOS/GOARCH spelling, as the OCI spec asks; nothing here runs it as
        # a container, and a single-manifest image is never platform-matched.
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer_tar)]},
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": _descriptor(CONFIG_TYPE, config),
        "layers": [_descriptor(LAYER_TYPE, layer)],
        "annotations": {
            VARIANT_ANNOTATION: "compat",
            "org.opencontainers.image.title": title,
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.description": description,
            "org.opencontainers.image.licenses": license_id,
        },
    })
    return Image(manifest, config, layer)


def layout_files(image, tag):
    """The image layout as {relative path: bytes}."""
    index = _json({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [_descriptor(MANIFEST_TYPE, image.manifest, {REF_NAME_ANNOTATION: tag})],
    })
    files = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (image.config, image.layer, image.manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    return files


def write_layout(image, tag, directory, archive):
    """Write the layout to `directory` (replaced) and as a tar to `archive`."""
    files = layout_files(image, tag)
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    for name, data in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    members = [("blobs/", None, 0o755), ("blobs/sha256/", None, 0o755)]
    members += [(name, files[name], 0o644) for name in sorted(files)]
    Path(archive).write_bytes(_tar(members))
