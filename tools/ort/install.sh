#!/usr/bin/env bash
# Installs tools/ort's pinned onnxruntime-node (CPU) into tools/ort/node_modules. Idempotent: does
# nothing when the pinned version is already there. --ignore-scripts: the package's postinstall
# tries to download GPU extras from outside; the CPU library ships inside the package itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/deps.sh"
adaquant_install_node
# One install at a time (the e2e tests call this concurrently): a lock on this script itself.
exec 9<"$0"
flock 9
want=$(node -p "require('$here/package.json').dependencies['onnxruntime-node']")
have=$(node -p "try { require('$here/node_modules/onnxruntime-node/package.json').version }
  catch { '' }")
if [ "$have" = "$want" ]; then
  echo "tools/ort: onnxruntime-node $have already installed"
  exit 0
fi
cd "$here"
if [ -f package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund
else
  npm install --ignore-scripts --no-audit --no-fund
fi
node -e "require('onnxruntime-node')" && echo "tools/ort: onnxruntime-node $want installed"
