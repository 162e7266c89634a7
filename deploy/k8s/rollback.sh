#!/bin/sh
# Rolls every Deployment of an installation back to the release before the current one:
#
#   deploy/k8s/rollback.sh <overlay>
#
# `kubectl rollout undo` on each Deployment of the release (ledgerline.io/step=rollout), then
# waits for each. Each Deployment's previous ReplicaSet holds the previous release's pod
# template: its images (pinned by digest when CI deployed them) and the names of its
# ConfigMaps, which carry a hash of their content and are kept by `kubectl apply`, so the old
# settings come back with the old code. Nothing else changes: the migrations stay (each one
# works with the release before it, deploy/k8s/README.md "Deploying"), and so do the topics.
# To go back further, deploy that release again: deploy.sh <overlay> <its tag>, or re-run its
# deploy-staging job in GitHub Actions (docs/deploy.md). KUBECTL names the kubectl to use.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 <overlay>" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
kubectl=${KUBECTL:-kubectl}
if [ ! -f "$here/overlays/$1/kustomization.yaml" ]; then
    echo "$0: no overlay '$1' in $here/overlays" >&2
    exit 2
fi
# The overlay's namespace, as deploy.sh finds it, without rendering any images.
namespace=$("$kubectl" kustomize "$here/overlays/$1" \
    | awk '/^kind: Namespace$/ { found = 1 } found && /^  name: / { print $2; exit }')

deployments=$("$kubectl" get deployment --namespace "$namespace" \
    --selector ledgerline.io/step=rollout --output name)
if [ -z "$deployments" ]; then
    echo "$0: no Deployment of a release in namespace $namespace" >&2
    exit 1
fi
for deployment in $deployments; do
    "$kubectl" rollout undo --namespace "$namespace" "$deployment"
done
for deployment in $deployments; do
    "$kubectl" rollout status --namespace "$namespace" "$deployment" --timeout=10m
done
echo "rolled back in namespace $namespace:"
"$kubectl" get deployment --namespace "$namespace" --selector ledgerline.io/step=rollout \
    --output 'custom-columns=NAME:.metadata.name,IMAGE:.spec.template.spec.containers[0].image'
