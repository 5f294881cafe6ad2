#!/usr/bin/env bash
# Offline checks of the manifests (no cluster needed):
#   1. both kustomizations render (kubectl kustomize);
#   2. every object passes the Kubernetes OpenAPI schemas, strictly (no
#      unknown fields), for several Kubernetes versions (kubernetes-validate,
#      from PyPI: pip install kubernetes-validate);
#   3. the router's haproxy.cfg, as rendered, passes `haproxy -c`.
#
#   packaging/k8s/check/offline.sh
#
# KUBE_VERSIONS overrides the versions checked. A missing tool is reported
# and fails the run.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S=$(dirname "$HERE")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
step() { printf '== %s\n' "$*"; }

step "kubectl kustomize"
kubectl kustomize "$K8S/base" >"$out/base.yaml"
kubectl kustomize "$K8S/overlays/ingress-nginx" >"$out/ingress-nginx.yaml"
for f in base ingress-nginx; do
  printf '%s: %s\n' "$f" "$(grep -E '^kind:' "$out/$f.yaml" | sed 's/kind: //' | paste -sd, -)"
done

step "kubernetes-validate --strict"
if command -v kubernetes-validate >/dev/null; then
  for v in ${KUBE_VERSIONS:-1.28.0 1.31.0 1.34.0 1.37.0}; do
    if kubernetes-validate -k "$v" --strict --quiet "$out/base.yaml" "$out/ingress-nginx.yaml"; then
      echo "Kubernetes $v: every object valid"
    else
      echo "Kubernetes $v: FAILED"; fail=1
    fi
  done
else
  echo "kubernetes-validate not found (pip install kubernetes-validate)"; fail=1
fi

step "haproxy -c (the rendered router configuration)"
if command -v haproxy >/dev/null; then
  python3 - "$out/base.yaml" "$out/haproxy.cfg" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
# The ConfigMap's haproxy.cfg block (a literal block scalar, indented 4).
m = re.search(r"^  haproxy\.cfg: \|-?\n((?:    .*\n|\n)+)", text, re.M)
assert m, "no haproxy.cfg in the rendered ConfigMap"
open(sys.argv[2], "w").write(re.sub(r"^    ", "", m.group(1), flags=re.M))
PY
  grep -q '^backend wes' "$out/haproxy.cfg" && grep -q 'server wes-2' "$out/haproxy.cfg" || fail=1
  NAMESPACE=wasm-exec-server CLUSTER_DOMAIN=cluster.local haproxy -c -f "$out/haproxy.cfg" || fail=1
else
  echo "haproxy not found (Debian: apt-get install haproxy)"; fail=1
fi

if [ "$fail" = 0 ]; then echo "all offline checks passed"; else echo "some checks FAILED"; exit 1; fi
