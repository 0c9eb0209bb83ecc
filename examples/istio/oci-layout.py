#!/usr/bin/env python3
"""Packages the filter's .wasm as an OCI image for Istio, with no container tooling.

Writes an OCI image layout directory and the same layout as a tar archive (what
`skopeo copy oci-archive:` and `oras cp --from-oci-layout` read). The image uses Istio's Wasm
OCI "oci" variant (solo-io/wasm spec/spec.md), which Istio's image fetcher (pkg/wasm) accepts:

  manifest  application/vnd.oci.image.manifest.v1+json
  config    application/vnd.module.wasm.config.v1+json        runtime-config.json
  layers    application/vnd.module.wasm.config.v1+json        runtime-config.json
            application/vnd.module.wasm.content.layer.v1+wasm  plugin.wasm (the raw module)

Istio needs exactly two layers in this variant ("number of layers must be 2"), one of them the
raw module. So the runtime config is both the manifest config and the first layer, as `wasme`
and `oras push runtime-config.json:... plugin.wasm:...` lay it out.

The output is reproducible: the same .wasm always gives the same manifest digest. That digest
is what a WasmPlugin's `sha256` must hold for an oci:// URL (Istio compares it with the
pulled image's manifest digest). For an http(s):// URL, `sha256` is the .wasm file's own
sha256. Both are printed.

Optionally (--render) it writes copies of Istio manifests with the image reference and the
digest filled in, and (--docker-context) a `docker build` context for the "compat" variant.

Standard library only: python3 examples/istio/oci-layout.py --help
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
WASM_CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"

# What the example manifests contain until `make oci` fills in the real values.
PLACEHOLDER_IMAGE = "oci://ghcr.io/example/ai-circuit-breaker:0.1.0"
PLACEHOLDER_SHA256 = "0" * 64

WASM_MAGIC = b"\0asm"


def canonical_json(obj):
    """Stable bytes for a JSON document: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, title=None):
    d = {"mediaType": media_type, "digest": "sha256:" + sha256_hex(data), "size": len(data)}
    if title:
        d["annotations"] = {TITLE: title}
    return d


def build_image(wasm, root_id, tag, name):
    """Returns (blobs by hex digest, manifest bytes, index bytes)."""
    runtime_config = canonical_json(
        {
            "type": "envoy_proxy",
            "abiVersions": ["v0.2.1"],
            "config": {"rootIds": [root_id]},
        }
    )
    config_desc = descriptor(WASM_CONFIG_MEDIA_TYPE, runtime_config, "runtime-config.json")
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config_desc,
            "layers": [
                config_desc,
                descriptor(WASM_LAYER_MEDIA_TYPE, wasm, "plugin.wasm"),
            ],
            "annotations": {
                TITLE: name,
                "org.opencontainers.image.version": tag,
            },
        }
    )
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                dict(descriptor(MANIFEST_MEDIA_TYPE, manifest), annotations={REF_NAME: tag})
            ],
        }
    )
    blobs = {sha256_hex(b): b for b in (runtime_config, wasm, manifest)}
    return blobs, manifest, index


def layout_files(blobs, index):
    """The files of the OCI image layout, path -> bytes, in a fixed order."""
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
    }
    for digest in sorted(blobs):
        files["blobs/sha256/" + digest] = blobs[digest]
    return files


def write_layout(directory, files):
    if os.path.exists(directory):
        # Only ever replace a previous image layout, never some other directory.
        if os.listdir(directory) and not os.path.isfile(os.path.join(directory, "oci-layout")):
            sys.exit(f"error: {directory} exists and is not an OCI image layout; not replacing it")
        shutil.rmtree(directory)
    for path, data in files.items():
        full = os.path.join(directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)


def write_archive(path, files):
    """A reproducible tar of the layout: fixed order, times, owners and modes."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("oci-layout", "index.json", "blobs/", "blobs/sha256/"):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 0
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
        for name, data in files.items():
            if name.startswith("blobs/"):
                info = tarfile.TarInfo(name)
                info.mtime = 0
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def verify_layout(directory, tag):
    """Re-reads the layout from disk and checks every digest, size and media type."""

    def blob(desc):
        algo, digest = desc["digest"].split(":", 1)
        assert algo == "sha256", desc
        with open(os.path.join(directory, "blobs", algo, digest), "rb") as f:
            data = f.read()
        assert sha256_hex(data) == digest and len(data) == desc["size"], desc
        return data

    with open(os.path.join(directory, "index.json"), "rb") as f:
        index = json.load(f)
    (entry,) = index["manifests"]
    assert entry["annotations"][REF_NAME] == tag
    manifest = json.loads(blob(entry))
    assert manifest["config"]["mediaType"] == WASM_CONFIG_MEDIA_TYPE
    blob(manifest["config"])
    types = [layer["mediaType"] for layer in manifest["layers"]]
    assert types == [WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE], types
    wasm = blob(manifest["layers"][1])
    assert wasm[:4] == WASM_MAGIC
    return entry["digest"]


def render(source, out_dir, image_ref, manifest_hex):
    with open(source) as f:
        text = f.read()
    for placeholder in (PLACEHOLDER_IMAGE, PLACEHOLDER_SHA256):
        if placeholder not in text:
            sys.exit(f"error: {source} no longer contains the placeholder {placeholder}")
    text = text.replace(PLACEHOLDER_IMAGE, "oci://" + image_ref)
    text = text.replace(PLACEHOLDER_SHA256, manifest_hex)
    target = os.path.join(out_dir, os.path.basename(source))
    os.makedirs(out_dir, exist_ok=True)
    with open(target, "w") as f:
        f.write(text)
    return target


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", required=True, help="the filter module (.wasm)")
    p.add_argument("--out", required=True, help="output directory, e.g. target/oci")
    p.add_argument("--name", default="ai-circuit-breaker", help="image name (file names)")
    p.add_argument("--tag", required=True, help="image tag, e.g. 0.1.0")
    p.add_argument("--root-id", default="ai_circuit_breaker", help="root id in the runtime config")
    p.add_argument("--image", default="ghcr.io/example/ai-circuit-breaker",
                   help="registry repository, for the printed commands and --render")
    p.add_argument("--render", action="append", default=[], metavar="MANIFEST",
                   help="write a copy of this Istio manifest with image and digest filled in "
                        "to OUT/istio/ (repeatable)")
    p.add_argument("--dockerfile", help="with --docker-context: the Dockerfile to copy there")
    p.add_argument("--docker-context", metavar="DIR",
                   help="write a docker build context (Dockerfile + plugin.wasm) to DIR")
    args = p.parse_args()

    with open(args.wasm, "rb") as f:
        wasm = f.read()
    if wasm[:4] != WASM_MAGIC or len(wasm) < 8:
        sys.exit(f"error: {args.wasm} is not a WebAssembly module (no \\0asm header)")

    blobs, manifest, index = build_image(wasm, args.root_id, args.tag, args.name)
    files = layout_files(blobs, index)
    layout_dir = os.path.join(args.out, args.name)
    archive = os.path.join(args.out, args.name + "-oci.tar")
    os.makedirs(args.out, exist_ok=True)
    write_layout(layout_dir, files)
    write_archive(archive, files)
    manifest_digest = verify_layout(layout_dir, args.tag)
    assert manifest_digest == "sha256:" + sha256_hex(manifest)
    manifest_hex = manifest_digest.split(":", 1)[1]
    with open(os.path.join(args.out, args.name + ".manifest-digest"), "w") as f:
        f.write(manifest_digest + "\n")

    image_ref = f"{args.image}:{args.tag}"
    rendered = [render(m, os.path.join(args.out, "istio"), image_ref, manifest_hex)
                for m in args.render]
    if args.docker_context:
        os.makedirs(args.docker_context, exist_ok=True)
        shutil.copyfile(args.wasm, os.path.join(args.docker_context, "plugin.wasm"))
        if args.dockerfile:
            shutil.copyfile(args.dockerfile, os.path.join(args.docker_context, "Dockerfile"))

    wasm_hex = sha256_hex(wasm)
    print(f"Wasm OCI image ({args.name}:{args.tag}, Istio \"oci\" variant)")
    print(f"  wasm             {args.wasm}")
    print(f"  wasm size        {len(wasm)} bytes ({len(wasm) / 1024:.1f} KiB)")
    print(f"  wasm sha256      {wasm_hex}")
    print(f"  manifest digest  {manifest_digest}")
    print(f"  layout           {layout_dir}/")
    print(f"  archive          {archive} ({os.path.getsize(archive)} bytes)")
    for r in rendered:
        print(f"  manifest         {r}")
    if args.docker_context:
        print(f"  docker context   {args.docker_context}/")
    print("WasmPlugin spec.sha256:")
    print(f"  url: oci://{image_ref}  ->  sha256: {manifest_hex}")
    print(f"  url: https://.../plugin.wasm  ->  sha256: {wasm_hex}")
    print(f"  or pin the digest: url: oci://{args.image}@{manifest_digest}")
    print("Push (keeps the manifest digest):")
    print(f"  oras cp --from-oci-layout {layout_dir}:{args.tag} {image_ref}")
    print(f"  skopeo copy --preserve-digests oci-archive:{archive}:{args.tag} docker://{image_ref}")


if __name__ == "__main__":
    main()
