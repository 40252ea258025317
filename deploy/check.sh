#!/usr/bin/env bash
# Checks every deployment file offline (run by .ci/run):
#  - shell and sbatch scripts: bash -n;
#  - systemd units: systemd-analyze verify (ExecStart pointed at stub binaries);
#  - Kubernetes: kustomize renders each overlay and every resource validates against the
#    Kubernetes schemas (kubernetes-validate, from PyPI, bundles them; CRDs such as
#    ServiceMonitor have no bundled schema and are reported as such).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "-- scripts"
for f in deploy/*.sh deploy/slurm/*.sbatch; do
  bash -n "$f" && echo "ok  $f"
done

echo "-- systemd units"
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$tmp/bin" "$tmp/units"
  for b in coordinator worker; do printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/$b"; chmod +x "$tmp/bin/$b"; done
  for u in deploy/systemd/*.service; do
    sed "s#/usr/local/bin/#$tmp/bin/#g" "$u" > "$tmp/units/$(basename "$u")"
  done
  out=$(systemd-analyze verify "$tmp"/units/*.service 2>&1 || true)
  # Only complaints about our units count (not about the host's own unit files).
  bad=$(printf '%s\n' "$out" | grep -F "$tmp/units" || true)
  if [ -n "$bad" ]; then printf '%s\n' "$bad"; exit 1; fi
  echo "ok  deploy/systemd/*.service"
else
  echo "SKIPPED systemd units: systemd-analyze not found"
fi

echo "-- kubernetes"
if command -v kubectl >/dev/null 2>&1; then
  for o in example gpu; do
    kubectl kustomize "deploy/k8s/overlays/$o" > "$tmp/$o.yaml"
    echo "ok  kustomize $o: $(grep -c '^kind:' "$tmp/$o.yaml") resources"
    kubernetes-validate --strict -k 1.30.0 --quiet "$tmp/$o.yaml"
    echo "ok  schemas of $o (Kubernetes 1.30)"
  done
else
  echo "SKIPPED kubernetes: kubectl (with kustomize) not found"
fi
