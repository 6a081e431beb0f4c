#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python: PostgreSQL (the production warehouse
# target of datasets is tested against a real server). Idempotent; needs root (CI runs as root).
set -euo pipefail
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
