#!/usr/bin/env bash
# Installs what APS needs on a fresh Debian / Raspberry Pi OS machine:
# mosquitto (only the binary is used; we start our own on a loopback port),
# nodejs (tests only: they run the touch UI's JavaScript typing engine),
# chromium and espeak-ng (the kiosk's screen and its read-aloud voice; the browser
# tests drive this same Debian chromium with Playwright, never a downloaded build),
# a virtualenv in .venv, and the project with its test tools.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
# The private test/demo broker makes its CA and certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# python-evdev builds from source: it needs a compiler, Python's headers and the
# kernel's input headers. The compiler also builds tests/fsync_shim.c (the
# durability test's LD_PRELOAD shim).
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
[ -e "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
  || need_apt+=(python3-dev)
[ -e /usr/include/linux/input.h ] || need_apt+=(linux-libc-dev)
# The tests run the touch UI's Vietnamese typing engine (plain JavaScript,
# edge_agent/ui/static/js/vn-input.js) under Node; the kiosk itself needs no Node.
command -v node >/dev/null 2>&1 || command -v nodejs >/dev/null 2>&1 || need_apt+=(nodejs)
# The touch UI runs in Debian's chromium in kiosk mode (scripts/kiosk-browser.sh), and the
# browser tests (tests/browser/) drive that same binary through Playwright: Playwright's own
# browser download is never used, so the tested browser is the one the box runs.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# "Đọc to" (read aloud) speaks the screen's Vietnamese with espeak-ng's Vietnamese voice,
# rendered on the box with no network.
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
# debootstrap: tests/test_install_chroot.py builds a Debian 12 root file system and runs the
# install command inside it.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.aps-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
