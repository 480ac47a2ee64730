#!/usr/bin/env bash
# Stops the daemons that ops/slurm-local/up.sh started, each by the pid in its pid file, in
# the reverse order. Idempotent; keeps the packages, the configuration and the accounting
# database, so up.sh brings the same cluster back. Queued and running jobs are cancelled first.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }

# stop NAME PID_FILE: TERM the process named in PID_FILE and wait up to 30 s for it to exit
stop() {
  local pid
  [ -s "$2" ] && pid=$(cat "$2") && kill -0 "$pid" 2>/dev/null || { echo "$1: not running"; return 0; }
  kill "$pid"
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { echo "$1: stopped"; return 0; }; sleep 0.5; done
  echo "down.sh: $1 (pid $pid) did not stop" >&2; return 1
}
# jobs would otherwise outlive slurmd (their slurmstepd keeps running)
if scontrol ping >/dev/null 2>&1; then squeue -h -o %i | xargs -r scancel; fi
stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop slurmdbd /run/slurm/slurmdbd.pid
stop mariadb /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
