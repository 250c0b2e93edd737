#!/bin/sh
# Build the documentation site into ./site, failing on any warning (broken links, missing
# snippets, docstrings that do not resolve). Run from anywhere; it builds from the repo root.
# Needs (tested with): pip install mkdocs==1.6.1 mkdocs-material==9.8.2 mkdocstrings==1.0.8 \
#     mkdocstrings-python==2.0.11 pymdown-extensions==13.1.2
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ]; then
    PYTHON=.venv/bin/python
fi
NO_MKDOCS_2_WARNING=1 exec "$PYTHON" -m mkdocs build --strict -d site "$@"
