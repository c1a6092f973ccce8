#!/usr/bin/env bash
# The playground's browser test drives Debian's chromium headless. Install it when it is missing and
# this shell may (root with apt-get); otherwise say so: those tests then skip with the same reason.
set -u
for b in chromium chromium-browser google-chrome; do
  command -v "$b" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo ">> installing chromium (Debian package) for the playground's browser test"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -q --no-install-recommends chromium >/tmp/reasonguard-chromium.log 2>&1 \
     || { apt-get update -q >>/tmp/reasonguard-chromium.log 2>&1 \
          && apt-get install -y -q --no-install-recommends chromium >>/tmp/reasonguard-chromium.log 2>&1; }; then
    exit 0
  fi
  echo ">> chromium could not be installed (see /tmp/reasonguard-chromium.log)"
else
  echo ">> no chromium on PATH: install Debian's 'chromium' to run the playground's browser test"
fi
exit 0
