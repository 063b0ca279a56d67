#!/usr/bin/env bash
# Copies the shared package into layers/shared/python/shared (the layout Lambda layers expect:
# /opt/python/shared). Development-only parts (the local stack) are left out of the layer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/layers/shared/python"
rm -rf "$dest"
mkdir -p "$dest"
rsync -a --exclude '__pycache__' --exclude 'local/' "$root/shared" "$dest/" 2>/dev/null \
  || (cp -r "$root/shared" "$dest/" && rm -rf "$dest/shared/local" && find "$dest" -name __pycache__ -prune -exec rm -rf {} +)
echo "shared layer content in $dest"
