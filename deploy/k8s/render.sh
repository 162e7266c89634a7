#!/bin/sh
# Prints one overlay's manifests for one release: every image of the suite, named
# ledgerline/<name> in the manifests, becomes <registry>/<name>:<tag>.
#
#   deploy/k8s/render.sh <overlay> <tag> [<registry>]
#
# <tag> is what CI pushed (the commit's short sha); <registry> defaults to LEDGERLINE_REGISTRY,
# then to ghcr.io/ledgerline/ledgerline, where CI pushes ghcr.io/<owner>/<repo>/<service>.
# KUBECTL names the kubectl to use (default: kubectl on the PATH).
#
# LEDGERLINE_DIGESTS, when set, names a file of `<name> sha256:<hex>` lines (CI writes one from
# each image build's digest): every image is then pinned as <registry>/<name>@sha256:<hex>,
# which names the very bytes that were tested, whatever later happens to the tag. Every image
# of the suite must have its line, so a release is never half pinned.
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 <overlay> <tag> [<registry>]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
overlay=$here/overlays/$1
tag=$2
registry=${3:-${LEDGERLINE_REGISTRY:-ghcr.io/ledgerline/ledgerline}}
kubectl=${KUBECTL:-kubectl}

if [ ! -f "$overlay/kustomization.yaml" ]; then
    echo "$0: no overlay '$1' in $here/overlays" >&2
    exit 2
fi
# A Docker tag: letters, digits, '_', '.' and '-', not starting with '.' or '-'.
if ! printf '%s' "$tag" | grep -Eq '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'; then
    echo "$0: '$tag' is not an image tag" >&2
    exit 2
fi

# A throwaway kustomization on top of the overlay, beside it (kustomize takes only relative
# paths, and none to a folder that holds the kustomization), with one image entry per image of the suite.
release=$(mktemp -d "$here/overlays/.release.XXXXXX")
trap 'rm -rf "$release"' EXIT
images=$("$kubectl" kustomize "$overlay" | sed -n 's#^ *image: ledgerline/\([a-z0-9-]*\)$#\1#p' | sort -u)
{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [../$1]"
    echo "images:"
    for name in $images; do
        echo "  - name: ledgerline/$name"
        echo "    newName: $registry/$name"
        if [ -n "${LEDGERLINE_DIGESTS:-}" ]; then
            digest=$(awk -v name="$name" '$1 == name { print $2 }' "$LEDGERLINE_DIGESTS")
            if ! printf '%s' "$digest" | grep -Eq '^sha256:[0-9a-f]{64}$'; then
                echo "$0: no digest for image $name in $LEDGERLINE_DIGESTS" >&2
                exit 2
            fi
            echo "    digest: \"$digest\""
        else
            echo "    newTag: \"$tag\""
        fi
    done
} > "$release/kustomization.yaml"
"$kubectl" kustomize "$release"
