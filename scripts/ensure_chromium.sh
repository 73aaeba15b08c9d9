#!/usr/bin/env bash
# Debian's chromium for the browser tests (`make e2e`), installed with apt when it is missing; a CJK
# font so that Chinese text is readable in the screenshots. Playwright drives this binary through
# `executable_path`: it never downloads a browser of its own (never run `playwright install`).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fonts=$(fc-list 2>/dev/null || true)   # read whole: grep -q would close a pipe early (pipefail)
grep -qiE 'wqy|noto.*cjk|droid sans fallback' <<<"$fonts" || need+=(fonts-wqy-zenhei)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: ${need[*]} missing; install as root: apt-get update && apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "ensure_chromium: installing ${need[*]} (apt)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
command -v chromium >/dev/null
