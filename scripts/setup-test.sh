#!/usr/bin/env bash
# Test-only system packages: Debian's chromium + chromium-driver for the browser test of the
# web page (tests/test_web.py, driven by Selenium from requirements.txt). Called by
# `make test`; idempotent. Without root or apt-get it prints why and the browser test skips.
set -uo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup-test] no apt-get here: install chromium and chromedriver yourself; tests/test_web.py will skip" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "[setup-test] not root and no password-less sudo: cannot apt-get install chromium chromium-driver; tests/test_web.py will skip" >&2
    exit 0
  fi
fi
echo "[setup-test] installing chromium and chromium-driver (Debian packages) for the browser test"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
  echo "[setup-test] apt-get could not install chromium chromium-driver; tests/test_web.py will skip" >&2
fi
exit 0
