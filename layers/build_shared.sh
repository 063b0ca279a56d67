#!/usr/bin/env bash
# Copies the shared package into layers/shared/python/shared (the layout Lambda layers expect:
# /opt/python/shared), or into DEST/shared when a destination is given (tests use a temp dir).
# Left out: the development-only local stack (shared/local/) and bytecode (__pycache__, *.pyc), so
# the layer holds exactly the source files Lambda needs and its content hash (sam build --cached)
# changes only when the code does.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/layers/shared/python}"
rm -rf "$dest/shared"
mkdir -p "$dest"
cp -R "$root/shared" "$dest/"
rm -rf "$dest/shared/local"
find "$dest/shared" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$dest/shared" -name '*.py[co]' -type f -delete
echo "shared layer content in $dest/shared"
