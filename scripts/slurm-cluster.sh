#!/usr/bin/env bash
# slurm-cluster.sh - run a real single-node SLURM cluster on this machine (for tests / CI).
#
# Usage (as root):
#   bash scripts/slurm-cluster.sh install   # apt-get the packages; no-op if already installed
#   bash scripts/slurm-cluster.sh start     # write configs, start daemons, wait until a job runs
#   bash scripts/slurm-cluster.sh status    # exit 0 = all running, 3 = all stopped, 1 = partial
#   bash scripts/slurm-cluster.sh stop      # stop the daemons this script started (via pid files)
#
# Daemons, started in this order without systemd: munged, mariadbd (private datadir),
# slurmdbd, slurmctld, slurmd. One node "$(hostname -s)" at 127.0.0.1 with 16 CPUs,
# 16000 MB and 4 fake GPUs (/dev/fakegpu0..3), in partition "debug" (default).
#
# Environment:
#   SLURM_STATE_DIR        all state, logs, pid files, DB data  [/var/tmp/wf-slurm]
#   SLURM_MAX_ARRAY_SIZE   MaxArraySize                         [1001]
#   SLURM_MAX_JOB_COUNT    MaxJobCount                          [20000]
#   SLURM_DB_PORT          TCP port of the private mariadbd     [3307]
#   SLURM_START_TIMEOUT    seconds to wait for each step        [60]
#
# Files written outside the state dir: /etc/slurm/{slurm,gres,slurmdbd}.conf,
# /etc/munge/munge.key (only if missing) and /dev/fakegpu0..3.
# Config changes (e.g. a new SLURM_MAX_ARRAY_SIZE) take effect on stop + start.
# Job state and accounting survive stop/start; `rm -rf $SLURM_STATE_DIR` while stopped resets them.
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/var/tmp/wf-slurm}
MAX_ARRAY_SIZE=${SLURM_MAX_ARRAY_SIZE:-1001}
MAX_JOB_COUNT=${SLURM_MAX_JOB_COUNT:-20000}
DB_PORT=${SLURM_DB_PORT:-3307}
TIMEOUT=${SLURM_START_TIMEOUT:-60}

NODE=$(hostname -s)
CLUSTER=wfcluster
NGPU=4
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurmdbpass   # mariadbd only listens on 127.0.0.1
CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819

MUNGE_DIR=$STATE/munge           # owned by munge: socket, pid, seed
MUNGE_SOCK=$MUNGE_DIR/munge.socket
MYSQL_DIR=$STATE/mysql           # owned by mysql: datadir, socket, pid
MYSQL_SOCK=$MYSQL_DIR/mysqld.sock
RUN_DIR=$STATE/run
LOG_DIR=$STATE/log

# name -> pid file; stop walks DAEMONS in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
declare -A PIDFILE=(
  [munged]=$MUNGE_DIR/munged.pid
  [mariadbd]=$MYSQL_DIR/mariadbd.pid
  [slurmdbd]=$RUN_DIR/slurmdbd.pid
  [slurmctld]=$RUN_DIR/slurmctld.pid
  [slurmd]=$RUN_DIR/slurmd.pid
)
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
BINARIES=(slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db sbatch srun sacct)

export PATH=$PATH:/usr/sbin:/sbin

log() { echo "[slurm-cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# True if pid is a live, non-zombie process. (Exited daemons are orphans of PID 1, which
# in this VM reaps them only after ~2 s, so a zombie counts as gone.)
alive() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st%% *} != Z ]]
}

not_alive() { ! alive "$1"; }

# pid of a daemon we started, if its pid file points at a live process of that name.
pid_of() {
  local f=${PIDFILE[$1]} pid
  [[ -s $f ]] || return 1
  pid=$(tr -dc 0-9 <"$f")
  [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && alive "$pid" || return 1
  echo "$pid"
}

# wait_for <seconds> <description> <command...>: poll every 0.1 s until command succeeds.
# With WATCH=<daemon> set, give up early if that daemon has died (after a 2 s grace for its pid file).
wait_for() {
  local secs=$1 what=$2; shift 2
  local start; start=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < start + secs )) || { log "timed out after ${secs}s waiting for $what"; return 1; }
    if [[ -n ${WATCH:-} ]] && (( $(date +%s) >= start + 2 )) && ! pid_of "$WATCH" >/dev/null; then
      log "$WATCH died while waiting for $what"; return 1
    fi
    sleep 0.1
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free() { ! port_open "$1" || die "port $1 is already in use by a process this script did not start ($2 cannot start)"; }

show_logs() {
  local f
  for f in "$@"; do [[ -f $f ]] && { log "---- tail $f"; tail -n 20 "$f" >&2; }; done
  return 1
}

# ---------------------------------------------------------------------------- install
cmd_install() {
  need_root
  local b missing=()
  for b in "${BINARIES[@]}"; do command -v "$b" >/dev/null || missing+=("$b"); done
  if (( ${#missing[@]} == 0 )); then log "packages already installed"; return 0; fi
  log "missing: ${missing[*]}; installing ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when there are no package lists yet, or when install fails with stale ones.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then apt-get update; fi
  apt-get install -y --no-install-recommends "${PACKAGES[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${PACKAGES[@]}"; }
}

# ---------------------------------------------------------------------------- configs
write_file() {  # write_file <path> <mode> <owner>  (content on stdin, atomic replace)
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"; chmod "$2" "$tmp"; chown "$3" "$tmp"; mv -f "$tmp" "$1"
}

setup_host() {
  mkdir -p "$STATE" "$RUN_DIR" "$LOG_DIR" "$STATE/ctld" "$STATE/slurmd" "$MUNGE_DIR" "$MYSQL_DIR" /etc/slurm
  chmod 755 "$STATE" "$RUN_DIR" "$LOG_DIR"
  chown munge:munge "$MUNGE_DIR"; chmod 755 "$MUNGE_DIR"   # clients must reach the socket
  chown mysql:mysql "$MYSQL_DIR"; chmod 750 "$MYSQL_DIR"
  touch "$LOG_DIR/munged.log" "$LOG_DIR/mariadb.log"
  chown munge:munge "$LOG_DIR/munged.log"; chown mysql:mysql "$LOG_DIR/mariadb.log"

  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key (1024 bytes)"
    mkdir -p /etc/munge; chown munge:munge /etc/munge; chmod 700 /etc/munge
    dd if=/dev/urandom bs=1024 count=1 status=none | write_file /etc/munge/munge.key 400 munge:munge
  fi

  # Fake GPUs: gres.conf File= must name character devices, else slurmd drops the GPUs.
  local i
  for (( i = 0; i < NGPU; i++ )); do
    [[ -c /dev/fakegpu$i ]] || { rm -f "/dev/fakegpu$i"; mknod "/dev/fakegpu$i" c 1 3; }
  done
}

write_configs() {
  write_file /etc/slurm/slurm.conf 644 root:root <<EOF
# Generated by scripts/slurm-cluster.sh - single-node test cluster. Do not edit.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups in this environment.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none

SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=$MAX_JOB_COUNT
KillWait=5
MinJobAge=300
InactiveLimit=0
Waittime=0

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MailProg=/bin/true

NodeName=$NODE NodeAddr=127.0.0.1 CPUs=16 RealMemory=16000 Gres=gpu:$NGPU State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

  write_file /etc/slurm/gres.conf 644 root:root <<EOF
# Generated by scripts/slurm-cluster.sh - fake GPUs (character devices made with mknod c 1 3).
NodeName=$NODE Name=gpu File=/dev/fakegpu[0-$((NGPU - 1))]
EOF

  write_file /etc/slurm/slurmdbd.conf 600 root:root <<EOF
# Generated by scripts/slurm-cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=${PIDFILE[slurmdbd]}
LogFile=$LOG_DIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
}

# ---------------------------------------------------------------------------- daemons
start_munged() {
  log "starting munged"
  runuser -u munge -- munged --socket="$MUNGE_SOCK" --pid-file="${PIDFILE[munged]}" \
    --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
    || show_logs "$LOG_DIR/munged.log" || die "munged failed to start"
  WATCH=munged wait_for "$TIMEOUT" munged munge -n --socket="$MUNGE_SOCK" || show_logs "$LOG_DIR/munged.log" || die "munged not answering"
}

# shellcheck disable=SC2120  # called with args via wait_for
mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCK" -u root "$@"; }

start_mariadbd() {
  port_free "$DB_PORT" mariadbd
  if [[ ! -d $MYSQL_DIR/data/mysql ]]; then
    log "initialising mariadb datadir $MYSQL_DIR/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MYSQL_DIR/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$LOG_DIR/mariadb-install.log" 2>&1 \
      || show_logs "$LOG_DIR/mariadb-install.log" || die "mariadb-install-db failed"
  fi
  log "starting mariadbd"
  setsid mariadbd --no-defaults --user=mysql --datadir="$MYSQL_DIR/data" \
    --socket="$MYSQL_SOCK" --pid-file="${PIDFILE[mariadbd]}" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --log-error="$LOG_DIR/mariadb.log" \
    --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900 \
    </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 &
  WATCH=mariadbd wait_for "$TIMEOUT" mariadbd mysql_root -e 'SELECT 1' || show_logs "$LOG_DIR/mariadb.log" || die "mariadbd not answering"
  wait_for 5 "mariadbd pid file" pid_of mariadbd || die "mariadbd wrote no pid file"
  mysql_root <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
EOF
}

start_slurmdbd() {
  port_free "$DBD_PORT" slurmdbd
  log "starting slurmdbd"
  slurmdbd || show_logs "$LOG_DIR/slurmdbd.log" || die "slurmdbd failed to start"
  WATCH=slurmdbd wait_for "$TIMEOUT" "slurmdbd port $DBD_PORT" port_open "$DBD_PORT" \
    || show_logs "$LOG_DIR/slurmdbd.log" || die "slurmdbd not listening"
}

start_slurmctld() {
  port_free "$CTLD_PORT" slurmctld
  log "starting slurmctld"
  slurmctld || show_logs "$LOG_DIR/slurmctld.log" || die "slurmctld failed to start"
  WATCH=slurmctld wait_for "$TIMEOUT" slurmctld bash -c 'scontrol ping | grep -q UP' \
    || show_logs "$LOG_DIR/slurmctld.log" || die "slurmctld not answering"
}

start_slurmd() {
  port_free "$SLURMD_PORT" slurmd
  log "starting slurmd"
  slurmd -N "$NODE" || show_logs "$LOG_DIR/slurmd.log" || die "slurmd failed to start"
}

# Node is up and schedulable. Jobs that were running across a stop/start keep it "mixed"/"allocated".
node_ready() { [[ $(sinfo -h -n "$NODE" -o %T 2>/dev/null) =~ ^(idle|mixed|allocated|completing)$ ]]; }

cmd_start() {
  need_root
  local t0=$EPOCHREALTIME d n=0 pid
  for d in "${DAEMONS[@]}"; do pid_of "$d" >/dev/null && n=$((n + 1)); done
  if (( n == ${#DAEMONS[@]} )); then log "already running (state dir $STATE)"; return 0; fi
  if (( n > 0 )); then log "partially running; stopping the rest first"; cmd_stop; fi
  for d in "${BINARIES[@]}"; do command -v "$d" >/dev/null || die "$d not found; run: $0 install"; done

  setup_host
  write_configs
  start_munged
  start_mariadbd
  start_slurmdbd
  start_slurmctld
  start_slurmd

  WATCH=slurmd wait_for "$TIMEOUT" "node $NODE to be up" node_ready || {
    scontrol show node "$NODE" >&2 || true
    show_logs "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log" || die "node $NODE not up"
  }
  log "running a smoke job"
  timeout "$TIMEOUT" srun -N1 -n1 -t 1 -J slurm-cluster-smoke -D / true \
    || show_logs "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log" || die "smoke job failed"
  printf '[slurm-cluster] cluster %s up on node %s in %.1f s (state dir %s)\n' \
    "$CLUSTER" "$NODE" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$STATE" >&2
}

cmd_stop() {
  need_root
  local i d pid
  for (( i = ${#DAEMONS[@]} - 1; i >= 0; i-- )); do
    d=${DAEMONS[i]}
    pid=$(pid_of "$d") || { rm -f "${PIDFILE[$d]}"; continue; }
    log "stopping $d (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 30 "$d to exit" not_alive "$pid"; then
      log "$d (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_for 5 "$d to die" not_alive "$pid" || die "could not kill $d (pid $pid)"
    fi
    rm -f "${PIDFILE[$d]}"
  done
  log "stopped"
}

cmd_status() {
  local d pid n=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then echo "$d: running (pid $pid)"; n=$((n + 1)); else echo "$d: stopped"; fi
  done
  if pid_of slurmctld >/dev/null; then sinfo -N -o '%N %P %T %c %m %G' || true; fi
  (( n == ${#DAEMONS[@]} )) && return 0
  (( n == 0 )) && return 3
  return 1
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
