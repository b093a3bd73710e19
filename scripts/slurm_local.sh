#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurm-wlm + munge), configured for a
# container: no cgroups (proctrack/linuxproc, task/none), no accounting, root may submit.
# Idempotent: installs the packages when missing, rewrites the config, (re)starts the daemons and
# waits until the node accepts jobs. Used by CI before `make test` so the @slurm test runs for real.
#
#   scripts/slurm_local.sh          # start (or restart) the cluster
#   scripts/slurm_local.sh stop     # stop the daemons this script started
set -euo pipefail

CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
PARTITION=${SLURM_LOCAL_PARTITION:-debug}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "slurm_local.sh: must run as root (it installs packages and starts system daemons)" >&2
    exit 2
  fi
}

stop_daemons() {
  # Only the daemons this script starts, found by their pid files.
  for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid"; do
    if [ -s "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  sleep 1
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  echo "slurm_local.sh: installing slurmctld slurmd slurm-client munge (Debian slurm-wlm)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    # munged refuses to start as root; run it as its own user like the packaged service does.
    su -s /bin/sh munge -c "/usr/sbin/munged" || runuser -u munge -- /usr/sbin/munged
  fi
  for _ in $(seq 1 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "slurm_local.sh: munged did not start (see /var/log/munge/munged.log)" >&2
  exit 1
}

write_config() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
  cat >"$CONF_DIR/slurm.conf" <<CONF
# Written by scripts/slurm_local.sh: one node, no cgroups (containers), no accounting.
ClusterName=solo-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  # Slurm 22.05 has no "disabled" cgroup plugin; without cgroup.conf and with the cgroup
  # plugins off above, slurmd never touches cgroups.
  rm -f "$CONF_DIR/cgroup.conf"
}

start_slurm() {
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd
  local host
  host=$(hostname -s)
  for _ in $(seq 1 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case "$state" in
      idle*|mix*|alloc*) echo "slurm_local.sh: node $host is $state in partition $PARTITION"; return ;;
      down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  echo "slurm_local.sh: the node did not come up; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" >&2
  exit 1
}

need_root
if [ "${1:-start}" = "stop" ]; then
  stop_daemons
  exit 0
fi
install_packages
stop_daemons
start_munge
write_config
start_slurm
