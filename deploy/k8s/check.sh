#!/bin/bash
# `make deploy-check`'s Kubernetes part, offline: renders every overlay as deploy.sh would
# (render.sh, with a made-up tag), validates the result against Kubernetes' own schemas and
# runs checkov on it.
#
#   deploy/k8s/check.sh <bin dir with kubectl and kubernetes-validate> <checkov> <output dir>
set -euo pipefail

bin=$1
checkov=$2
out=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
rm -f "$out"/*.yaml

rendered=()
for overlay in "$here"/overlays/*/; do
    name=$(basename "$overlay")
    KUBECTL="$bin/kubectl" "$here/render.sh" "$name" check0000 > "$out/$name.yaml"
    rendered+=("$out/$name.yaml")
    echo "rendered overlay $name: $(grep -c '^kind:' "$out/$name.yaml") resources"
done

# --strict refuses fields the schema does not know. A kind it has no schema for is only a
# warning there; here it fails the check, since nothing at all would have been validated.
if ! report=$("$bin/kubernetes-validate" --strict --quiet "${rendered[@]}" 2>&1) || [ -n "$report" ]; then
    echo "$report" >&2
    echo "kubernetes-validate: the manifests above did not validate" >&2
    exit 1
fi
echo "kubernetes-validate --strict: every resource valid"

files=()
for file in "${rendered[@]}"; do
    files+=(-f "$file")
done
"$checkov" --config-file "$here/checkov.yaml" "${files[@]}"
