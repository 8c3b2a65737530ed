#!/usr/bin/env bash
# The kiosk's screen: Chromium in kiosk mode on the agent's page (docs/install.md).
#
#   kiosk-browser.sh            wait for the agent, then run Chromium, restarting it when it dies
#   kiosk-browser.sh screen on|off  turn the display on or off now (maintenance)
#   kiosk-browser.sh screen auto    on in opening hours, off at night (the policy timer,
#                                   systemd/aps-screen-policy.timer, runs this every 5 min)
#
# Run by the compositor: `cage -- kiosk-browser.sh` (Debian, systemd/aps-kiosk-browser.service)
# or labwc's autostart (Raspberry Pi OS, systemd/labwc/autostart), as the unprivileged
# screen user, never as root.
#
# 1. Waits until the agent answers http://127.0.0.1:<port>/api/v1/health (bounded:
#    APS_HEALTH_WAIT_S; then exits 1 with a log line and the unit starts it again).
# 2. Wipes and recreates a private profile directory (nothing of one citizen survives into
#    the next start: cookies, storage, cache, crash dumps).
# 3. Starts Chromium: kiosk mode (no address bar, no tabs, fullscreen), no pinch zoom, no
#    translate bar, no error or crash dialogs, no first-run, no background networking, no
#    sync, sound allowed without a gesture (the "Đọc to" button speaks at once).
# 4. When Chromium exits it is started again after a backoff (1 s doubling to
#    APS_BACKOFF_MAX_S; back to 1 s after a run longer than APS_HEALTHY_RUN_S).
#
# Settings (environment; the unit or autostart file sets them):
#   APS_UI_URL          page to show               (default http://127.0.0.1:8765/)
#   APS_CHROMIUM        browser binary             (default /usr/bin/chromium)
#   APS_BROWSER_PROFILE profile directory          (default $XDG_RUNTIME_DIR/aps-kiosk-browser,
#                                                   else /tmp/aps-kiosk-browser-$UID)
#   APS_HEALTH_WAIT_S   longest wait for the agent (default 120)
#   APS_BACKOFF_MAX_S   longest pause between restarts (default 30)
#   APS_HEALTHY_RUN_S   a run this long resets the backoff (default 60)
#   APS_MAX_RUNS        stop after this many browser runs (default 0: never; tests use it)
#   APS_BROWSER_EXTRA   extra Chromium flags, space-separated (e.g. --force-device-scale-factor=1.25)
# The screen policy (screen auto; /etc/aps/screen.env):
#   APS_SCREEN_ON_AT    display on from            (default 06:45, 24 h clock, local time)
#   APS_SCREEN_OFF_AT   display off from           (default 18:30)
#   APS_SCREEN_DAYS     days it comes on, date +%u (default 1-6: Monday to Saturday)
#   APS_ALLOW_ROOT=1    run even as root (only for test containers that have no other user)
set -euo pipefail

log() { echo "kiosk-browser: $*" >&2; }

screen_power() {
  # wlopm drives the wlr output-power protocol, which cage and labwc both speak.
  local state=$1
  if ! command -v wlopm >/dev/null 2>&1; then
    log "screen $state: wlopm is not installed (apt-get install wlopm)"
    return 1
  fi
  if [ -z "${WAYLAND_DISPLAY:-}" ]; then
    log "screen $state: WAYLAND_DISPLAY is not set (run this as the screen user, inside its session)"
    return 1
  fi
  wlopm "--$state" '*'
  log "screen $state"
}

hhmm() {  # "06:45" -> 645 (a number to compare), or fail naming the setting
  local name=$1 value=$2
  if [[ ! $value =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]]; then
    log "$name=$value: expected HH:MM on the 24 h clock, e.g. 06:45"
    return 2
  fi
  echo $((10#${value%%:*} * 100 + 10#${value##*:}))
}

screen_wanted() {  # prints on or off for the time now (or APS_SCREEN_NOW="<1-7> HH:MM")
  local on off days now day time
  on=$(hhmm APS_SCREEN_ON_AT "${APS_SCREEN_ON_AT:-06:45}") || return 2
  off=$(hhmm APS_SCREEN_OFF_AT "${APS_SCREEN_OFF_AT:-18:30}") || return 2
  days=${APS_SCREEN_DAYS:-1-6}
  if [[ ! $days =~ ^[1-7](-[1-7])?(,[1-7](-[1-7])?)*$ ]]; then
    log "APS_SCREEN_DAYS=$days: expected days 1-7 (1 = Monday), e.g. 1-6 or 1-5,7"
    return 2
  fi
  now=${APS_SCREEN_NOW:-$(date +'%u %H:%M')}
  day=${now%% *}
  time=$(hhmm APS_SCREEN_NOW "${now#* }") || return 2
  local part lo hi open_today=0
  IFS=, read -ra parts <<<"$days"
  for part in "${parts[@]}"; do
    lo=${part%-*}; hi=${part#*-}
    if [ "$day" -ge "$lo" ] && [ "$day" -le "$hi" ]; then open_today=1; fi
  done
  if [ "$open_today" = 1 ] && [ "$time" -ge "$on" ] && [ "$time" -lt "$off" ]; then
    echo on
  else
    echo off
  fi
}

if [ "${1:-}" = screen ]; then
  case "${2:-}" in
    on | off) screen_power "$2"; exit $? ;;
    auto)
      want=$(screen_wanted) || exit 2
      if [ "${3:-}" = --dry-run ]; then echo "$want"; exit 0; fi
      screen_power "$want"; exit $?
      ;;
    *) log "usage: $0 screen on|off|auto [--dry-run]"; exit 2 ;;
  esac
fi
if [ $# -gt 0 ]; then
  log "usage: $0 [screen on|off|auto]"
  exit 2
fi

if [ "$(id -u)" = 0 ] && [ "${APS_ALLOW_ROOT:-}" != 1 ]; then
  log "refusing to run the browser as root; run it as the screen user (docs/install.md)"
  exit 1
fi

URL=${APS_UI_URL:-http://127.0.0.1:8765/}
URL=${URL%/}/
HEALTH=${URL}api/v1/health
CHROMIUM=${APS_CHROMIUM:-/usr/bin/chromium}
if [ -n "${APS_BROWSER_PROFILE:-}" ]; then
  PROFILE=$APS_BROWSER_PROFILE
elif [ -n "${XDG_RUNTIME_DIR:-}" ]; then
  PROFILE=$XDG_RUNTIME_DIR/aps-kiosk-browser
else
  PROFILE=/tmp/aps-kiosk-browser-$(id -u)
fi
HEALTH_WAIT_S=${APS_HEALTH_WAIT_S:-120}
BACKOFF_MAX_S=${APS_BACKOFF_MAX_S:-30}
HEALTHY_RUN_S=${APS_HEALTHY_RUN_S:-60}
MAX_RUNS=${APS_MAX_RUNS:-0}

case $URL in
  http://127.0.0.1:* | http://localhost:* | http://\[::1\]:*) ;;
  *) log "APS_UI_URL=$URL: the screen shows only the agent on this box (http://127.0.0.1:PORT/)"; exit 2 ;;
esac
case ${PROFILE##*/} in
  aps-kiosk-browser*) ;;  # it is wiped at every start: never let that be a home directory
  *) log "APS_BROWSER_PROFILE=$PROFILE: its last part must start with aps-kiosk-browser"; exit 2 ;;
esac
if [ ! -x "$CHROMIUM" ]; then
  log "$CHROMIUM not found: apt-get install chromium (docs/install.md)"
  exit 1
fi

agent_answers() {
  python3 - "$HEALTH" <<'EOF'
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

wait_for_agent() {
  local start=$SECONDS next_log=0
  log "waiting up to ${HEALTH_WAIT_S}s for the agent at $HEALTH"
  until agent_answers; do
    local waited=$((SECONDS - start))
    if [ "$waited" -ge "$HEALTH_WAIT_S" ]; then
      log "the agent did not answer $HEALTH within ${HEALTH_WAIT_S}s; is aps-agent running" \
        "with [ui] listen set? (systemctl status aps-agent; journalctl -u aps-agent)"
      return 1
    fi
    if [ "$waited" -ge "$next_log" ]; then
      [ "$waited" -eq 0 ] || log "still waiting for the agent (${waited}s)"
      next_log=$((waited + 10))
    fi
    sleep 1 & wait $!
  done
  log "the agent answers after $((SECONDS - start))s"
}

fresh_profile() {
  rm -rf -- "$PROFILE"
  mkdir -m 0700 -p -- "$PROFILE"
}

# One line per flag, and why.
FLAGS=(
  --kiosk                                   # fullscreen, no address bar, no tabs, no menus
  --no-first-run                            # no welcome page
  --no-default-browser-check
  --noerrdialogs                            # no error dialogs
  --disable-session-crashed-bubble          # no "restore pages?" after a crash
  --disable-infobars
  --hide-crash-restore-bubble
  --disable-pinch                           # no pinch zoom out of the page
  --overscroll-history-navigation=0         # no swipe back/forward
  --disable-features=Translate,TranslateUI,OverscrollHistoryNavigation,MediaRouter,HardwareMediaKeyHandling
  --autoplay-policy=no-user-gesture-required  # read-aloud speaks without a prior tap
  --disable-background-networking           # no calls home: the page needs only 127.0.0.1
  --disable-component-update
  --disable-sync
  --disable-default-apps
  --disable-extensions
  --disable-breakpad                        # no crash uploads
  --metrics-recording-only
  --password-store=basic                    # no keyring prompt
  --check-for-update-interval=31536000
  --lang=vi
  --user-data-dir="$PROFILE"
)
[ -z "${WAYLAND_DISPLAY:-}" ] || FLAGS+=(--ozone-platform=wayland)
# shellcheck disable=SC2206  # word splitting of the extra flags is the point
[ -z "${APS_BROWSER_EXTRA:-}" ] || FLAGS+=(${APS_BROWSER_EXTRA})

child=0
stop() {
  log "stopping"
  [ "$child" = 0 ] || kill -TERM "$child" 2>/dev/null || true
  exit 0
}
trap stop TERM INT HUP

wait_for_agent || exit 1
runs=0
backoff=1
while :; do
  fresh_profile
  runs=$((runs + 1))
  started=$SECONDS
  log "starting $CHROMIUM on $URL (run $runs)"
  "$CHROMIUM" "${FLAGS[@]}" "$URL" &
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=0
  ran=$((SECONDS - started))
  log "the browser exited with status $rc after ${ran}s"
  if [ "$MAX_RUNS" -gt 0 ] && [ "$runs" -ge "$MAX_RUNS" ]; then
    log "stopping after $runs runs (APS_MAX_RUNS)"
    exit 0
  fi
  if [ "$ran" -ge "$HEALTHY_RUN_S" ]; then backoff=1; fi
  log "restarting in ${backoff}s"
  sleep "$backoff" & wait $!  # in the background: a stop signal is handled at once
  backoff=$((backoff * 2))
  [ "$backoff" -le "$BACKOFF_MAX_S" ] || backoff=$BACKOFF_MAX_S
  agent_answers || wait_for_agent || exit 1
done
