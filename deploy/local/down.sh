#!/usr/bin/env bash
# Stop exactly what deploy/local/up.sh started (the processes recorded in its state
# directory), then remove that state. The watcher gets SIGTERM and finishes what it is doing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="${LAB_STATE:-$root/deploy/local/.state}"

if [ ! -f "$state/pids" ]; then
  echo "the lab is not up (no $state/pids)"
  exit 0
fi
# Running, not merely a zombie waiting for its reaper.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# The watcher first (it still needs moto to finish), then moto.
tac "$state/pids" | while read -r pid name; do
  # Only a process that is still the one started (a pid may have been reused since).
  if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
      alive "$pid" || break
      sleep 0.2
    done
    if alive "$pid"; then
      echo "$name ($pid) did not stop within 30 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped $name ($pid)"
  fi
done
rm -rf "$state"
