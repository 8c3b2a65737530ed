#!/usr/bin/env bash
# Installs the APS kiosk agent on a fresh Debian 12 / Raspberry Pi OS (Bookworm) box, as root:
#
#   sudo ./scripts/install.sh                 install or bring up to date (idempotent)
#   sudo ./scripts/install.sh --uninstall     remove it (keeps /etc/aps and /var/lib/aps)
#   sudo ./scripts/install.sh --uninstall --purge   ... and those, and the aps user
#
# Theory of operation. Every step compares what is there with what should be and acts only on
# a difference, printing "changed: ..." for each thing it did and "ok: ..." for each thing it
# found right; a second run prints no "changed" and ends "nothing to change". The layout:
#
#   /opt/aps/releases/<version>/   the project (venv/ with aps-agent, docs/, scripts/,
#                                  systemd/), root-owned, read-only to the service; its
#                                  .aps-release file (the source's fingerprint) is written
#                                  last and marks it complete
#   /opt/aps/current               symlink -> releases/<version>, replaced atomically (a new
#                                  link under a temporary name, then rename(2)); issue 10's
#                                  updates add releases next to it and switch this link
#   /etc/aps                       0750 root:aps   config (agent.toml, written by provision)
#   /var/lib/aps                   0700 aps:aps    the agent's state (the unit's StateDirectory)
#   /etc/systemd/system/aps-agent.service, /etc/udev/rules.d/60-aps-devices.rules
#   /usr/local/bin/aps-agent       symlink -> /opt/aps/current/venv/bin/aps-agent
#
# A release directory is built in place (a virtualenv's scripts carry their absolute path,
# so it cannot be built elsewhere and renamed); a half-built one has no .aps-release and is
# rebuilt. The same version from changed source is refused unless --force, so a box never
# runs code its version number does not describe.
#
# systemctl enable runs wherever systemctl exists (offline in a chroot: it only makes the link
# for the next boot); daemon-reload and restart only where systemd is the running init
# (/run/systemd/system exists: not in a chroot); udevadm only where udevd listens
# (/run/udev/control); none of them with --prefix or --no-system.
set -euo pipefail
umask 022

# --- what the agent needs from Debian: the one list ------------------------------------------
# python3/python3-venv: the agent's own virtualenv; espeak-ng: the "Đọc to" voice;
# libusb-1.0-0: the receipt printer (pyusb); fonts-dejavu-core: the receipt's Vietnamese text;
# ca-certificates: HTTPS to central for enrolment.
APT_PACKAGES=(python3 python3-venv espeak-ng libusb-1.0-0 fonts-dejavu-core ca-certificates)
# Only when installing from PyPI (no --wheelhouse): python-evdev builds from source.
APT_BUILD_PACKAGES=(gcc python3-dev linux-libc-dev)
# The groups the unit's SupplementaryGroups names (systemd/aps-agent.service); the udev rules
# give each device node to one of them.
DEVICE_GROUPS=(dialout input lp plugdev video)
UNITS=(aps-agent.service aps-update.path aps-update.service)
RULES=(60-aps-devices.rules)
SERVICE_USER=aps

usage() {
  cat <<'EOF'
Usage: install.sh [options]
  --prefix DIR       install under DIR instead of / (tests; no apt, users or systemctl)
  --no-system        skip apt-get, the aps user and groups, systemctl and udevadm
  --wheelhouse DIR   pip install from the wheels in DIR only (--no-index; no PyPI needed)
  --force            rebuild the release even when its version is installed from other source
  --uninstall        remove what install.sh installed (keeps /etc/aps and /var/lib/aps)
  --purge            with --uninstall: remove /etc/aps, /var/lib/aps and the aps user too
  --print-packages   print the Debian packages the agent needs, one a line, and exit
  -h, --help         this text
EOF
}

die() {
  echo "install.sh: error: $*" >&2
  exit 2
}

PREFIX=/
NO_SYSTEM=0
WHEELHOUSE=""
FORCE=0
UNINSTALL=0
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --no-system) NO_SYSTEM=1; shift ;;
    --wheelhouse) [ $# -ge 2 ] || die "--wheelhouse needs a directory"; WHEELHOUSE=$2; shift 2 ;;
    --wheelhouse=*) WHEELHOUSE=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    --print-packages) printf '%s\n' "${APT_PACKAGES[@]}"; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge goes with --uninstall"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$PREFIX" 2>/dev/null || die "--prefix $PREFIX: cannot create it"
PREFIX=$(cd "$PREFIX" && pwd)
R=${PREFIX%/} # "" for /, so "$R/opt/aps" is /opt/aps
LIVE=0        # acting on the running system (not a --prefix tree)
[ "$PREFIX" = / ] && LIVE=1
SYSTEM=$LIVE  # apt, users, systemctl, udevadm
[ "$NO_SYSTEM" = 1 ] && SYSTEM=0
if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or give --prefix DIR for a test install"
fi
if [ -n "$WHEELHOUSE" ]; then
  [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE: no such directory"
  compgen -G "$WHEELHOUSE/*.whl" >/dev/null || die "--wheelhouse $WHEELHOUSE: no .whl files in it"
  WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
fi

CHANGES=0
changed() { CHANGES=$((CHANGES + 1)); echo "changed: $*"; }
ok() { echo "ok: $*"; }
skipped() { echo "skipped: $*"; }

# systemctl enable/disable work offline (a chroot, an image being built): they only make or
# remove the unit's links; daemon-reload, start, stop and restart need systemd running
systemctl_here() { [ "$SYSTEM" = 1 ] && command -v systemctl >/dev/null; }
systemd_runs() { systemctl_here && [ -d /run/systemd/system ]; }
udevd_runs() { [ "$SYSTEM" = 1 ] && [ -S /run/udev/control ]; }

# chown only on the live system, as root, where the aps account exists (a --no-system install
# may have none; a --prefix tree keeps the installing user's ownership)
can_chown() { [ "$LIVE" = 1 ] && [ "$(id -u)" = 0 ] && getent group "${1#*:}" >/dev/null && getent passwd "${1%:*}" >/dev/null; }
owner() { # owner USER:GROUP PATH
  if can_chown "$1"; then chown "$1" "$2"; fi
}
want_owner() { # what stat should show: USER:GROUP when owner() can act, else what is there
  if can_chown "$1"; then echo "$1"; else stat -c '%U:%G' "$2"; fi
}

# install a file if absent or different; atomic (temporary name, then rename); PUT=1 if it did
PUT=0
put_file() { # put_file SOURCE DEST MODE
  local src=$1 dest=$2 mode=$3
  PUT=0
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c '%a' "$dest")" = "${mode#0}" ]; then
    ok "$dest"
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  install -m "$mode" "$src" "$dest.aps-tmp"
  mv -f "$dest.aps-tmp" "$dest"
  PUT=1
  changed "$dest (mode $mode)"
}

put_dir() { # put_dir PATH MODE USER:GROUP
  local path=$1 mode=$2 who=$3
  if [ ! -d "$path" ]; then
    mkdir -p "$path"
    chmod "$mode" "$path"
    owner "$who" "$path"
    changed "$path ($mode $(stat -c '%U:%G' "$path"))"
    return
  fi
  if [ "$(stat -c '%a' "$path")" != "${mode#0}" ] || [ "$(stat -c '%U:%G' "$path")" != "$(want_owner "$who" "$path")" ]; then
    chmod "$mode" "$path"
    owner "$who" "$path"
    changed "$path ($mode $(stat -c '%U:%G' "$path"), was not)"
  else
    ok "$path ($mode $(stat -c '%U:%G' "$path"))"
  fi
}

# --- uninstall ---------------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if systemd_runs; then
    for unit in "${UNITS[@]}"; do
      if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit"; then
        systemctl disable --quiet --now "$unit"
        changed "stopped and disabled $unit"
      fi
    done
  elif systemctl_here; then
    for unit in "${UNITS[@]}"; do
      if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        systemctl disable --quiet "$unit"
        changed "disabled $unit (offline: systemd is not running here)"
      fi
    done
  fi
  removed_unit=0
  for unit in "${UNITS[@]}"; do
    for link in "$R"/etc/systemd/system/*.wants/"$unit"; do # left by a --no-system uninstall
      if [ -L "$link" ]; then rm -f "$link"; changed "removed $link"; fi
    done
    if [ -e "$R/etc/systemd/system/$unit" ]; then
      rm -f "$R/etc/systemd/system/$unit"
      removed_unit=1
      changed "removed $R/etc/systemd/system/$unit"
    fi
  done
  if [ "$removed_unit" = 1 ] && systemd_runs; then systemctl daemon-reload; fi
  removed_rules=0
  for rules in "${RULES[@]}"; do
    if [ -e "$R/etc/udev/rules.d/$rules" ]; then
      rm -f "$R/etc/udev/rules.d/$rules"
      removed_rules=1
      changed "removed $R/etc/udev/rules.d/$rules"
    fi
  done
  if [ "$removed_rules" = 1 ] && udevd_runs; then udevadm control --reload; fi
  if [ "$(readlink "$R/usr/local/bin/aps-agent" 2>/dev/null || true)" = /opt/aps/current/venv/bin/aps-agent ]; then
    rm -f "$R/usr/local/bin/aps-agent"
    changed "removed $R/usr/local/bin/aps-agent"
  fi
  if [ -e "$R/opt/aps" ]; then
    rm -rf "$R/opt/aps"
    changed "removed $R/opt/aps"
  fi
  if [ "$PURGE" = 1 ]; then
    for dir in "$R/etc/aps" "$R/var/lib/aps"; do
      if [ -e "$dir" ]; then rm -rf "$dir"; changed "removed $dir"; fi
    done
    if [ "$SYSTEM" = 1 ]; then
      if getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER"
        changed "removed user $SERVICE_USER"
      fi
      if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER"
        changed "removed group $SERVICE_USER"
      fi
    fi
  else
    for dir in "$R/etc/aps" "$R/var/lib/aps"; do
      if [ -e "$dir" ]; then echo "kept: $dir (config and the kiosk's data; --purge removes it)"; fi
    done
  fi
  echo "install.sh: the Debian packages (${APT_PACKAGES[*]}) stay installed"
  if [ "$CHANGES" = 0 ]; then
    echo "install.sh: nothing to remove, APS is not installed"
  else
    echo "install.sh: uninstalled, $CHANGES change(s)"
  fi
  exit 0
fi

[ -f "$SRC/pyproject.toml" ] || die "no pyproject.toml in $SRC: run install.sh from the project's checkout (this copy can only --uninstall)"

# --- 1. Debian packages ------------------------------------------------------------------------
if [ "$SYSTEM" = 1 ]; then
  command -v dpkg-query >/dev/null || die "no dpkg: install.sh supports Debian 12 / Raspberry Pi OS Bookworm"
  wanted=("${APT_PACKAGES[@]}")
  [ -n "$WHEELHOUSE" ] || wanted+=("${APT_BUILD_PACKAGES[@]}")
  missing=()
  for pkg in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    changed "Debian packages ${missing[*]}"
  else
    ok "Debian packages ${wanted[*]}"
  fi
else
  skipped "apt-get (--no-system or --prefix)"
fi

PY=/usr/bin/python3 # Debian's, not whatever python3 is first on PATH (a developer's venv)
[ -x "$PY" ] || PY=$(command -v python3 || true)
[ -n "$PY" ] || die "python3 is missing: apt-get install python3 python3-venv"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "python3 is $("$PY" -V 2>&1); the agent needs 3.11 or later (Debian 12 has 3.11)"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "python3-venv is missing: apt-get install python3-venv"

# --- 2. the service's user and groups ----------------------------------------------------------
if [ "$SYSTEM" = 1 ]; then
  for group in "${DEVICE_GROUPS[@]}" "$SERVICE_USER"; do
    if getent group "$group" >/dev/null; then
      ok "group $group"
    else
      groupadd --system "$group"
      changed "group $group"
    fi
  done
  groups_csv=$(IFS=,; echo "${DEVICE_GROUPS[*]}")
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --gid "$SERVICE_USER" --groups "$groups_csv" --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin --comment "APS kiosk agent" "$SERVICE_USER"
    changed "user $SERVICE_USER (system, no home, nologin; groups $groups_csv)"
  else
    have=" $(id -nG "$SERVICE_USER") "
    lacking=()
    for group in "${DEVICE_GROUPS[@]}"; do
      [[ $have == *" $group "* ]] || lacking+=("$group")
    done
    if [ ${#lacking[@]} -gt 0 ]; then
      usermod -a -G "$(IFS=,; echo "${lacking[*]}")" "$SERVICE_USER"
      changed "user $SERVICE_USER added to ${lacking[*]}"
    else
      ok "user $SERVICE_USER (groups $groups_csv)"
    fi
  fi
else
  skipped "user and groups (--no-system or --prefix)"
fi

# --- 3. the release and its virtualenv ---------------------------------------------------------
VERSION=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$SRC/pyproject.toml")
[[ $VERSION =~ ^[0-9A-Za-z.+_-]+$ ]] || die "pyproject.toml: version $VERSION is not a safe directory name"
PACKAGES=(edge_agent drivers sync central firmware_mocks)
SHIPPED=(docs scripts systemd) # copied into the release beside the venv
fingerprint() { # sha256 over every file the release is made of (not caches, not tests)
  (cd "$SRC" && find pyproject.toml README.md "${PACKAGES[@]}" "${SHIPPED[@]}" -type f \
    ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -d' ' -f1
}
FPR=$(fingerprint)
RELEASES=$R/opt/aps/releases
REL=$RELEASES/$VERSION
build=1
if [ -f "$REL/.aps-release" ]; then
  if [ "$(cat "$REL/.aps-release")" = "$FPR" ]; then
    build=0
    ok "release $VERSION ($REL)"
  elif [ "$FORCE" = 0 ]; then
    die "release $VERSION is installed from other source ($REL/.aps-release differs): bump the version in pyproject.toml, or rerun with --force to rebuild $VERSION"
  fi
fi
if [ "$build" = 1 ]; then
  rm -rf "$REL" # half-built, or --force
  mkdir -p "$RELEASES"
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  # pip builds in the source tree: build from a clean copy, leave the checkout untouched
  (cd "$SRC" && tar -cf - --exclude='__pycache__' --exclude='*.pyc' pyproject.toml README.md "${PACKAGES[@]}") \
    | tar -xf - -C "$stage"
  "$PY" -m venv "$REL/venv"
  pip_args=(--disable-pip-version-check --no-cache-dir --quiet)
  if [ -n "$WHEELHOUSE" ]; then pip_args+=(--no-index --find-links "$WHEELHOUSE"); fi
  "$REL/venv/bin/pip" install "${pip_args[@]}" "$stage"
  for dir in "${SHIPPED[@]}"; do
    mkdir -p "$REL/$dir"
    cp -r "$SRC/$dir/." "$REL/$dir/"
  done
  "$REL/venv/bin/aps-agent" --version >/dev/null || die "the new release's aps-agent does not run"
  echo "$FPR" >"$REL/.aps-release.tmp"
  mv "$REL/.aps-release.tmp" "$REL/.aps-release"
  changed "release $VERSION built in $REL"
fi

# --- 4. the current link (atomic: a new link, then rename over the old one) --------------------
if [ "$(readlink "$R/opt/aps/current" 2>/dev/null || true)" = "releases/$VERSION" ]; then
  ok "$R/opt/aps/current -> releases/$VERSION"
else
  ln -sfn "releases/$VERSION" "$R/opt/aps/.current.tmp"
  mv -Tf "$R/opt/aps/.current.tmp" "$R/opt/aps/current"
  changed "$R/opt/aps/current -> releases/$VERSION"
fi

# --- 4b. the technician's command on PATH (sudo aps-agent ...) ---------------------------------
LINK_TARGET=/opt/aps/current/venv/bin/aps-agent
if [ "$(readlink "$R/usr/local/bin/aps-agent" 2>/dev/null || true)" = "$LINK_TARGET" ]; then
  ok "$R/usr/local/bin/aps-agent -> $LINK_TARGET"
elif [ -e "$R/usr/local/bin/aps-agent" ] || [ -L "$R/usr/local/bin/aps-agent" ]; then
  die "$R/usr/local/bin/aps-agent exists and is not install.sh's link: remove it, then rerun"
else
  mkdir -p "$R/usr/local/bin"
  ln -s "$LINK_TARGET" "$R/usr/local/bin/aps-agent"
  changed "$R/usr/local/bin/aps-agent -> $LINK_TARGET"
fi

# --- 4c. the update guard, outside every release (docs/updates.md) -----------------------------
# ExecStartPre=+ runs it before each start of the agent: it rolls back a release on trial that
# cannot commit itself, so it must not live in a release directory that may be broken.
put_file "$REL/scripts/aps-update-guard" "$R/opt/aps/bin/aps-update-guard" 0755

# --- 5. config and state directories -----------------------------------------------------------
put_dir "$R/etc/aps" 0750 "root:$SERVICE_USER"
put_dir "$R/var/lib/aps" 0700 "$SERVICE_USER:$SERVICE_USER"

# --- 6. the unit and the udev rules ------------------------------------------------------------
units_changed=0
for unit in "${UNITS[@]}"; do
  put_file "$REL/systemd/$unit" "$R/etc/systemd/system/$unit" 0644 # the release's own
  [ "$PUT" = 0 ] || units_changed=1
done
rules_changed=0
for rules in "${RULES[@]}"; do
  put_file "$REL/systemd/udev/$rules" "$R/etc/udev/rules.d/$rules" 0644
  [ "$PUT" = 0 ] || rules_changed=1
done

# --- 7. systemd and udev, where they run -------------------------------------------------------
if systemctl_here; then
  if systemd_runs && [ "$units_changed" = 1 ]; then systemctl daemon-reload; fi
  for unit in "${UNITS[@]}"; do
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      ok "$unit enabled"
    else
      systemctl enable --quiet "$unit"
      changed "$unit enabled (starts once /etc/aps/agent.toml exists: aps-agent provision)"
    fi
    if systemd_runs && { [ "$build" = 1 ] || [ "$units_changed" = 1 ]; }; then
      systemctl try-restart "$unit" # a running agent moves to the new release
    fi
  done
  systemd_runs || skipped "systemctl daemon-reload and restart (systemd is not running here: a chroot or a container)"
else
  skipped "systemctl (--no-system or --prefix)"
fi
if udevd_runs; then
  if [ "$rules_changed" = 1 ]; then
    udevadm control --reload
    udevadm trigger --action=change --subsystem-match=usb --subsystem-match=tty \
      --subsystem-match=input --subsystem-match=video4linux
  fi
else
  skipped "udevadm reload (udevd is not running here)"
fi

if [ "$CHANGES" = 0 ]; then
  echo "install.sh: nothing to change, release $VERSION is installed in $R/opt/aps"
else
  echo "install.sh: release $VERSION installed in $R/opt/aps, $CHANGES change(s)"
fi
