#!/bin/sh
# Build the documentation site into ./site, failing on any warning (broken links, missing
# snippets, docstrings that do not resolve). Run from anywhere; it builds from the repo root.
# `docs/build.sh --serve` serves it on http://127.0.0.1:8000 instead (live reload).
#
# The site needs nothing from the network when viewed: fonts are the system's; Mermaid (the
# diagrams) and iframe-worker (search from file://) are fetched here, once, from the npm
# registry (pinned versions and checksums) and served with the site.
# Needs: the docs extra of pyproject.toml, and npm.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ]; then
    PYTHON=.venv/bin/python
fi

# fetch NAME VERSION SHA256 FILE-IN-PACKAGE DEST: one file of an npm package, checked.
fetch() {
    dest=docs/assets/javascripts/$5
    stamp="$dest.$2"
    [ -f "$stamp" ] && return 0
    work=$(mktemp -d)
    echo "==> fetching $1 $2 from the npm registry" >&2
    (cd "$work" && npm pack --silent "$1@$2" >/dev/null)
    echo "$3  $work/$1-$2.tgz" | sha256sum -c --quiet -
    tar -xzf "$work/$1-$2.tgz" -C "$work" "package/$4"
    mkdir -p "$(dirname "$dest")"
    rm -f "$dest".*
    cp "$work/package/$4" "$dest"
    touch "$stamp"
    rm -rf "$work"
}
fetch mermaid 11.12.0 93492e4d609be83653a41c435f4cbd7e74419f7fa6b4fc90a8c983195f64af82 \
    dist/mermaid.min.js mermaid.min.js
fetch iframe-worker 1.0.4 e8c5d12d87829c503afba01d67772ea9f4aba5b7ae57a0c98e1917711030efbb \
    shim/index.js iframe-worker-shim.js

if [ "${1:-}" = "--serve" ]; then
    shift
    NO_MKDOCS_2_WARNING=1 exec "$PYTHON" -m mkdocs serve "$@"
fi
NO_MKDOCS_2_WARNING=1 exec "$PYTHON" -m mkdocs build --strict -d site "$@"
