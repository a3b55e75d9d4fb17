#!/usr/bin/env bash
# `make e2e-kind`: the e2e suite against a local kind cluster, with the operator in-cluster.
#
# Creates (or reuses) the kind cluster $KIND_CLUSTER, builds the image from the Dockerfile,
# loads it into the nodes, and runs `pytest -m e2e e2e --operator image`. Pods reach this
# machine's test Prometheus at the gateway of kind's docker network. The cluster is kept for
# the next run; `kind delete cluster --name foreseer-e2e` removes it.
#
# Usage: PY=.venv/bin/python bash hack/e2e-kind.sh [extra pytest args]
set -euo pipefail

PY=${PY:-python3}
KIND_CLUSTER=${KIND_CLUSTER:-foreseer-e2e}
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=${IMAGE:-foreseer:$VERSION-e2e}

for tool in docker kind kubectl; do
  if ! command -v "$tool" >/dev/null; then
    echo "e2e-kind: '$tool' is not installed; it needs docker, kind and kubectl" >&2
    exit 1
  fi
done

mkdir -p build
export KUBECONFIG="$PWD/build/kind-$KIND_CLUSTER.kubeconfig"
if ! kind get clusters | grep -qx "$KIND_CLUSTER"; then
  kind create cluster --name "$KIND_CLUSTER" --wait 180s
fi
kind get kubeconfig --name "$KIND_CLUSTER" > "$KUBECONFIG"

docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

# The IPv4 gateway of the `kind` docker network: this machine, as the nodes see it.
HOST_ADDRESS=$(docker network inspect kind \
  --format '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 '\.')

"$(dirname "$PY")/pytest" -q -m e2e e2e --operator image --image "$IMAGE" \
  --host-address "$HOST_ADDRESS" "$@"
