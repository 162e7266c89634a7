#!/bin/sh
# Rolls one release out to the cluster kubectl points at:
#
#   deploy/k8s/deploy.sh <overlay> <tag> [<registry>]
#
# 1. renders the overlay with the release's images (render.sh);
# 2. applies everything but the Deployments: the namespace, ConfigMaps (new names, since their
#    names carry a hash of their content, so running pods keep theirs), Services, policies and
#    the release's Jobs, after deleting the previous release's Jobs (a Job cannot be changed);
# 3. waits for the Jobs (ledgerline.io/step=prepare): the Kafka topics and every service's
#    migrations. If one fails, it stops here, and the running release goes on untouched;
# 4. applies the Deployments (ledgerline.io/step=rollout) and waits for each rollout.
#
# The Secrets must exist first (README.md "Secrets"). KUBECTL names the kubectl to use.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kubectl=${KUBECTL:-kubectl}
job_timeout_seconds=900

manifests=$(mktemp)
trap 'rm -f "$manifests"' EXIT
"$here/render.sh" "$@" > "$manifests"
namespace=$(awk '/^kind: Namespace$/ { found = 1 } found && /^  name: / { print $2; exit }' "$manifests")
echo "release $2 of overlay $1 into namespace $namespace"

"$kubectl" delete job --namespace "$namespace" --selector ledgerline.io/step=prepare \
    --ignore-not-found --wait=true
"$kubectl" apply --filename "$manifests" --selector 'ledgerline.io/step!=rollout'

for job in $("$kubectl" get job --namespace "$namespace" --selector ledgerline.io/step=prepare \
    --output name); do
    waited=0
    while :; do
        state=$("$kubectl" get --namespace "$namespace" "$job" \
            --output 'jsonpath={.status.conditions[?(@.status=="True")].type}')
        case " $state " in
            *" Complete "*)
                echo "$job completed"
                break
                ;;
            *" Failed "*)
                "$kubectl" logs --namespace "$namespace" "$job" --tail=50 >&2 || true
                echo "$job failed: the release stops here, the running one is untouched" >&2
                exit 1
                ;;
        esac
        if [ "$waited" -ge "$job_timeout_seconds" ]; then
            echo "$job has not finished after ${job_timeout_seconds}s" >&2
            exit 1
        fi
        sleep 5
        waited=$((waited + 5))
    done
done

"$kubectl" apply --filename "$manifests" --selector ledgerline.io/step=rollout
for deployment in $("$kubectl" get deployment --namespace "$namespace" \
    --selector ledgerline.io/step=rollout --output name); do
    "$kubectl" rollout status --namespace "$namespace" "$deployment" --timeout=10m
done
