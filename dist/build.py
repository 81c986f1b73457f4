#!/usr/bin/env python3
"""Assemble the release in target/dist/: what a user loads without Rust.

`make dist` runs it after building the filter (`make build`), the client
(`make client`) and `cargo build --release -p quota-matrix`:

    quota_filter.wasm                       the filter, after `wasm-opt -Oz`
    quota_filter.wasm.sha256                its checksum (sha256sum format)
    quota-filter-oci/                       the filter as an OCI image layout,
                                            tagged with the version (oci_image.py)
    quota-filter-oci.tar                    the same layout as one file (oci-archive)
    quota-filter-oci.digest                 the image manifest's digest: what a
                                            registry reports and Istio's and Envoy
                                            Gateway's `sha256` field checks
    quota-matrix-<host triple>              the quota-matrix tool
    quota-matrix-<host triple>.sha256
    quota-client-<version>.tgz              `npm pack` of client/, with LICENSE
    LICENSE
    SHA256SUMS                              every file above (`sha256sum -c SHA256SUMS`)

Then skopeo reads the image back, layout and archive, and must see the
manifest this wrote. Python stdlib, wasm-opt (binaryen), npm and skopeo.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oci_image  # noqa: E402  (beside this file)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "target" / "dist"
# wasm-opt's output for the last input, kept across runs (see optimised_wasm).
WORK = REPO / "target" / "dist-work"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "quota_filter.wasm"
MATRIX = REPO / "target" / "release" / "quota-matrix"
CLIENT = REPO / "client"
LICENSE = REPO / "LICENSE"

WASM_NAME = "quota_filter.wasm"
IMAGE_NAME = "quota-filter-oci"
# -Oz: 14% fewer bytes than the release build, no measurable change in time
# per request (BENCHMARKS.md, ".wasm size"). The release build strips the
# section naming the wasm features it uses, so wasm-opt is told: those the
# Rust toolchain's wasm32-wasip1 target enables (`rustc --print cfg`).
WASM_OPT = ["wasm-opt", "-Oz", "--enable-bulk-memory", "--enable-sign-ext",
            "--enable-mutable-globals", "--enable-nontrapping-float-to-int",
            "--enable-multivalue", "--enable-reference-types"]


class DistError(Exception):
    pass


def sha256_hex(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def need(path, command):
    if not path.exists():
        raise DistError(f"{path.relative_to(REPO)} is missing: run `{command}`")


def package_version(manifest):
    return tomllib.loads(manifest.read_text())["package"]["version"]


def host_triple():
    out = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.startswith("host:"))


def optimised_wasm():
    """wasm-opt's output for the current build; rerun only when the input or
    the command changed (it takes 15-25 s on two cores)."""
    key = json.dumps({"input": sha256_hex(WASM), "command": WASM_OPT})
    cached, cached_key = WORK / WASM_NAME, WORK / (WASM_NAME + ".key")
    if not (cached.exists() and cached_key.exists() and cached_key.read_text() == key):
        WORK.mkdir(parents=True, exist_ok=True)
        cached_key.unlink(missing_ok=True)
        subprocess.run([*WASM_OPT, str(WASM), "-o", str(cached)], check=True)
        cached_key.write_text(key)
    return cached


def write_checksum(path):
    """`<name>.sha256` beside path, as `sha256sum` prints it."""
    line = f"{sha256_hex(path)}  {path.name}\n"
    path.with_name(path.name + ".sha256").write_text(line)


def npm_tarball(out):
    """`npm pack` of client/ as published: its package.json and the files it
    lists, plus the top-level LICENSE (npm packs a LICENSE file it finds
    beside package.json, and client/ has none of its own)."""
    package = json.loads((CLIENT / "package.json").read_text())
    stage = WORK / "npm" / package["name"]
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copy2(CLIENT / "package.json", stage / "package.json")
    for name in package["files"]:  # paths of files or folders (no globs there)
        need(CLIENT / name, "make client")
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        if (CLIENT / name).is_dir():
            shutil.copytree(CLIENT / name, stage / name)
        else:
            shutil.copy2(CLIENT / name, stage / name)
    if package.get("license"):
        shutil.copy2(LICENSE, stage / "LICENSE")
    result = subprocess.run(["npm", "pack", "--json", "--ignore-scripts",
                             "--pack-destination", str(out)],
                            cwd=stage, check=True, capture_output=True, text=True)
    return out / json.loads(result.stdout)[0]["filename"]


def skopeo_check(image, tag, layout, archive):
    """skopeo reads both forms and must find exactly the manifest written."""
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:{tag}"],
                         check=True, capture_output=True).stdout
    if raw != image.manifest:
        raise DistError(f"skopeo reads another manifest from {layout}: {raw[:200]!r}")
    inspected = json.loads(subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{archive}:{tag}"],
        check=True, capture_output=True, text=True).stdout)
    if inspected.get("Digest") != image.digest:
        raise DistError(f"skopeo reads digest {inspected.get('Digest')} from {archive}, "
                        f"not {image.digest}")


def build():
    need(WASM, "make build")
    need(MATRIX, "cargo build --release -p quota-matrix")
    need(CLIENT / "pkg", "make client")
    need(LICENSE, "git checkout LICENSE")
    version = package_version(REPO / "filter" / "Cargo.toml")

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    wasm = OUT / WASM_NAME
    shutil.copyfile(optimised_wasm(), wasm)
    write_checksum(wasm)

    image = oci_image.build_image(
        wasm.read_bytes(), title="quota-filter", version=version,
        description="Per-user AI quotas for Envoy: the proxy-wasm filter (plugin.wasm)",
        license_id="Apache-2.0")
    layout, archive = OUT / IMAGE_NAME, OUT / (IMAGE_NAME + ".tar")
    oci_image.write_layout(image, version, layout, archive)
    (OUT / (IMAGE_NAME + ".digest")).write_text(image.digest + "\n")
    skopeo_check(image, version, layout, archive)

    matrix = OUT / f"quota-matrix-{host_triple()}"
    shutil.copyfile(MATRIX, matrix)
    matrix.chmod(0o755)
    write_checksum(matrix)

    npm_tarball(OUT)
    shutil.copyfile(LICENSE, OUT / "LICENSE")

    files = sorted(p for p in OUT.iterdir() if p.is_file())
    (OUT / "SHA256SUMS").write_text("".join(f"{sha256_hex(p)}  {p.name}\n" for p in files))

    print(f"{OUT.relative_to(REPO)}/ (version {version}):")
    print(f"  {WASM.relative_to(REPO)}: {WASM.stat().st_size:,} bytes; "
          f"after `{' '.join(WASM_OPT[:2])}`: {wasm.stat().st_size:,} bytes")
    for path in files:
        print(f"  {path.name}: {path.stat().st_size:,} bytes")
    print(f"  {IMAGE_NAME}/: OCI image layout, tag {version}, manifest {image.digest}")


def main():
    try:
        build()
    except DistError as err:
        print(f"dist: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
