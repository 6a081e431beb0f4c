#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python: PostgreSQL (the production warehouse
# target of datasets is tested against a real server), OpenSSH's ssh-keygen (signed CLI
# requests are signed and verified with it) and Chromium (the UI test drives the Dagster UI in
# it with Playwright, which never downloads a browser of its own, and web apps' smoke gate renders
# their pages in it), Node.js and npm (web apps are built with npm). Idempotent; needs root (CI
# runs as root).
set -euo pipefail
missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
