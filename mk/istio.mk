# Istio packaging, included by the main Makefile. That Makefile defines WASM (the filter
# module) and the `build` target that produces it.
#
#   make oci            OCI image layout + archive of the filter (Istio's Wasm OCI "oci"
#                       variant), its sha256 values, and the example manifests with them
#   make wasm-sha256    the .wasm file's sha256 (WasmPlugin sha256 for http(s):// URLs)
#   make istio-validate check examples/istio/ against Istio's CRD schemas and the filter
#
# Only sh, sha256sum and python3 (standard library) are needed: no Docker, no registry.
# Push the result with oras or skopeo (see examples/istio/README.md), for example:
#   make oci OCI_IMAGE=ghcr.io/you/ai-circuit-breaker
#   oras cp --from-oci-layout target/oci/ai-circuit-breaker:0.1.0 ghcr.io/you/ai-circuit-breaker:0.1.0

# Where the image goes: target/oci/<name>/ (layout), target/oci/<name>-oci.tar (archive),
# target/oci/istio/ (manifests with the image and digest filled in), target/oci/docker/.
OCI_DIR   ?= target/oci
OCI_NAME  ?= ai-circuit-breaker
# The image tag: the crate version.
OCI_TAG   ?= $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
# The registry repository the image will be pushed to (used in the printed commands and in
# the rendered manifests).
OCI_IMAGE ?= ghcr.io/example/ai-circuit-breaker

.PHONY: oci wasm-sha256 istio-validate

oci: build
	python3 examples/istio/oci-layout.py --wasm $(WASM) --out $(OCI_DIR) --name $(OCI_NAME) \
		--tag $(OCI_TAG) --image $(OCI_IMAGE) \
		--render examples/istio/wasmplugin.yaml \
		--render examples/istio/envoyfilter-body-routing.yaml \
		--docker-context $(OCI_DIR)/docker --dockerfile examples/istio/Dockerfile

wasm-sha256: build
	@sha256sum $(WASM) | cut -d ' ' -f 1

istio-validate:
	cargo test --test istio_manifests
