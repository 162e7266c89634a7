#!/bin/bash
# `make deploy-check`'s observability part, offline: the alert rules checked and unit-tested
# by promtool, and the dashboard's queries parsed by promtool too (as recording rules of a
# throwaway file), so a typo in a panel fails here rather than on a blank graph.
#
#   deploy/observability/check.sh <python> <output dir>
set -euo pipefail

python=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

promtool check rules "$here/alerts.yml"
(cd "$here" && promtool test rules tests/*.yml)

"$python" - "$here/dashboard.json" "$out/dashboard-queries.yml" <<'PY'
import json
import sys

dashboard = json.load(open(sys.argv[1]))
rules = []
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        # Grafana's variables are not PromQL: $service stands for a regular expression.
        expr = target["expr"].replace("$service", ".*")
        rules.append({"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expr})
if not rules:
    sys.exit("the dashboard has no queries")
with open(sys.argv[2], "w") as out:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, out, indent=1)
print(f"dashboard: {len(rules)} queries in {len(dashboard['panels'])} panels")
PY
promtool check rules "$out/dashboard-queries.yml"
