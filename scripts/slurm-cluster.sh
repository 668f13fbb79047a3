#!/usr/bin/env bash
# slurm-cluster.sh - run a real SLURM test cluster on this machine (for tests / CI), beside
# whatever else runs here. It never writes /etc/slurm or /etc/munge and never stops a daemon
# that it did not start: every cluster it makes lives in its own state dir, with its own
# config (SLURM_CONF), ClusterName, ports, munge key, database and pid files.
#
# Usage (as root):
#   bash scripts/slurm-cluster.sh install              # apt-get the packages; no-op if already installed
#   bash scripts/slurm-cluster.sh start [--nodes N]    # write configs, start daemons, wait until a job runs
#   bash scripts/slurm-cluster.sh status [--nodes N]   # exit 0 = all running, 3 = all stopped, 1 = partial
#   bash scripts/slurm-cluster.sh stop [--nodes N]     # stop what this script started (pid files), remove its network
#   bash scripts/slurm-cluster.sh env [--nodes N]      # print `export SLURM_CONF=...` for this cluster
#   eval "$(bash scripts/slurm-cluster.sh env)" && sinfo
#
# --nodes 1 (default): cluster "wftest", one node "$(hostname -s)" at 127.0.0.1 with 16 CPUs,
#   16000 MB and 4 fake GPUs, in partition "debug" (default).
# --nodes N (2-9): cluster "wftest<N>n", nodes node1..nodeN, each a slurmd in its own network
#   namespace with its own address on a private bridge (<subnet>.11, .12, ...); the head
#   (slurmctld, slurmdbd) is <subnet>.1 on the bridge. 8 CPUs, 8000 MB and 2 fake GPUs per node,
#   partition "debug". No route leaves the subnet. Each node sees its own /etc/hosts (a bind
#   mount inside its mount namespace); the host's /etc/hosts is not changed.
#
# Daemons, started in this order without systemd: munged, mariadbd (private datadir), slurmdbd,
# slurmctld, slurmd (one per node). A start that fails stops what it started and removes the
# network it made. Clients (sbatch, sacct, submitit, the tests) use the cluster through SLURM_CONF.
#
# Environment (defaults for --nodes 1 / --nodes N):
#   SLURM_STATE_DIR        config, state, logs, pid files, DB data [/var/tmp/wf-slurm-test / ...-test-<N>n]
#   SLURM_CLUSTER_NAME     ClusterName                             [wftest / wftest<N>n]
#   SLURM_PORT_BASE        slurmctld; +1 slurmd, +2 slurmdbd, +3 mariadbd [16817 / 16827]
#   SLURM_SUBNET           first three octets of the bridge network [10.77.0]  (--nodes N only)
#   SLURM_GPUS_PER_NODE    fake GPUs per node                      [4 / 2]
#   SLURM_MAX_ARRAY_SIZE   MaxArraySize                            [1001]
#   SLURM_MAX_JOB_COUNT    MaxJobCount                             [100000]
#                          (ended jobs count until MinJobAge=60 s has passed: the 10,000-point
#                          test and benchmarks submit and cancel tens of thousands of jobs)
#   SLURM_START_TIMEOUT    seconds to wait for each step           [60]
#   SLURM_CLUSTER_FAIL_AFTER  tests only: fail the start after this step (net_up, start_munged,
#                          start_mariadbd, start_slurmdbd, start_slurmctld, start_slurmd), to check the rollback
#
# Config changes (e.g. a new SLURM_MAX_ARRAY_SIZE) take effect on stop + start. Accounting survives
# stop/start; jobs do not: a start cancels every job that its controller recovers from before
# (a test cluster's jobs belong to the tests that ran then, and the nodes share this machine's boot
# time, so SLURM would keep a job whose processes died as RUNNING until its time limit).
# `rm -rf $SLURM_STATE_DIR` while stopped resets everything.
set -euo pipefail

usage() { echo "usage: $0 {install|start|stop|status|env} [--nodes N]" >&2; exit 2; }

CMD=${1:-}; shift || true
NODES=1
while (( $# )); do
  case $1 in
    --nodes) NODES=${2:-}; shift 2 || usage ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    *) usage ;;
  esac
done
[[ $NODES =~ ^[1-9]$ ]] || { echo "--nodes must be 1-9, got '$NODES'" >&2; exit 2; }

if (( NODES == 1 )); then
  STATE=${SLURM_STATE_DIR:-/var/tmp/wf-slurm-test}
  CLUSTER=${SLURM_CLUSTER_NAME:-wftest}
  PORT_BASE=${SLURM_PORT_BASE:-16817}
  NGPU=${SLURM_GPUS_PER_NODE:-4}
else
  STATE=${SLURM_STATE_DIR:-/var/tmp/wf-slurm-test-${NODES}n}
  CLUSTER=${SLURM_CLUSTER_NAME:-wftest${NODES}n}
  PORT_BASE=${SLURM_PORT_BASE:-16827}
  NGPU=${SLURM_GPUS_PER_NODE:-2}
fi
SUBNET=${SLURM_SUBNET:-10.77.0}
MAX_ARRAY_SIZE=${SLURM_MAX_ARRAY_SIZE:-1001}
MAX_JOB_COUNT=${SLURM_MAX_JOB_COUNT:-100000}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
for v in PORT_BASE NGPU MAX_ARRAY_SIZE MAX_JOB_COUNT TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a number, got '${!v}'" >&2; exit 2; }
done
[[ $CLUSTER =~ ^[a-z][a-z0-9]{0,9}$ ]] || { echo "SLURM_CLUSTER_NAME must be 1-10 lowercase letters/digits, got '$CLUSTER'" >&2; exit 2; }

CTLD_PORT=$PORT_BASE SLURMD_PORT=$((PORT_BASE + 1)) DBD_PORT=$((PORT_BASE + 2)) DB_PORT=$((PORT_BASE + 3))
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurmdbpass   # mariadbd only listens on 127.0.0.1

HEAD=$(hostname -s)
if (( NODES == 1 )); then
  HEAD_ADDR=127.0.0.1
  NODE_NAMES=("$HEAD")
else
  HEAD_ADDR=$SUBNET.1
  NODE_NAMES=()
  for (( i = 1; i <= NODES; i++ )); do NODE_NAMES+=("node$i"); done
fi
BRIDGE=br-$CLUSTER          # interface names are at most 15 characters
NETNS_PREFIX=$CLUSTER-      # namespaces $CLUSTER-node1 ...

CONF_DIR=$STATE/etc              # slurm.conf, gres.conf, slurmdbd.conf, hosts
export SLURM_CONF=$CONF_DIR/slurm.conf
MUNGE_DIR=$STATE/munge           # owned by munge: key, socket, pid, seed
MUNGE_SOCK=$MUNGE_DIR/munge.socket
MYSQL_DIR=$STATE/mysql           # owned by mysql: datadir, socket, pid
MYSQL_SOCK=$MYSQL_DIR/mysqld.sock
RUN_DIR=$STATE/run
LOG_DIR=$STATE/log
NET_FILE=$STATE/run/network      # what start created: "bridge X" / "netns Y" lines, removed by stop

# name -> pid file; stop walks DAEMONS in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld)
declare -A PIDFILE=(
  [munged]=$MUNGE_DIR/munged.pid
  [mariadbd]=$MYSQL_DIR/mariadbd.pid
  [slurmdbd]=$RUN_DIR/slurmdbd.pid
  [slurmctld]=$RUN_DIR/slurmctld.pid
)
for n in "${NODE_NAMES[@]}"; do DAEMONS+=("slurmd:$n"); PIDFILE[slurmd:$n]=$RUN_DIR/slurmd-$n.pid; done
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server iproute2 util-linux)
BINARIES=(slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db sbatch srun sacct ip nsenter unshare)

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
  [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "${1%%:*}" ]] && alive "$pid" || return 1
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

port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }
port_free() { ! port_open "$1" || die "port $1 is already in use by a process this script did not start ($2 cannot start; set SLURM_PORT_BASE)"; }

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

setup_state() {
  mkdir -p "$STATE" "$CONF_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE/ctld" "$STATE/slurmd" "$STATE/dev" "$MUNGE_DIR" "$MYSQL_DIR"
  chmod 755 "$STATE" "$CONF_DIR" "$RUN_DIR" "$LOG_DIR"
  runuser -u munge -- test -x "$STATE" && runuser -u mysql -- test -x "$STATE" \
    || die "the users munge and mysql cannot reach $STATE (a parent folder is not searchable); choose another SLURM_STATE_DIR"
  chown munge:munge "$MUNGE_DIR"; chmod 755 "$MUNGE_DIR"   # clients must reach the socket
  chown mysql:mysql "$MYSQL_DIR"; chmod 750 "$MYSQL_DIR"
  touch "$LOG_DIR/munged.log" "$LOG_DIR/mariadb.log"
  chown munge:munge "$LOG_DIR/munged.log"; chown mysql:mysql "$LOG_DIR/mariadb.log"
  if [[ -s $STATE/ctld/clustername && $(cat "$STATE/ctld/clustername") != "$CLUSTER" ]]; then
    die "$STATE holds the state of cluster '$(cat "$STATE/ctld/clustername")', not '$CLUSTER'; use another SLURM_STATE_DIR"
  fi

  if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    dd if=/dev/urandom bs=1024 count=1 status=none | write_file "$MUNGE_DIR/munge.key" 400 munge:munge
  fi

  # Fake GPUs: gres.conf File= must name character devices, else slurmd drops the GPUs.
  local i
  for (( i = 0; i < NGPU; i++ )); do
    [[ -c $STATE/dev/gpu$i ]] || { rm -f "$STATE/dev/gpu$i"; mknod "$STATE/dev/gpu$i" c 1 3; }
  done
}

write_configs() {
  local node_lines="" n i=10 addr
  if (( NODES == 1 )); then
    node_lines="NodeName=$HEAD NodeAddr=127.0.0.1 CPUs=16 RealMemory=16000 Gres=gpu:$NGPU State=UNKNOWN"
  else
    for n in "${NODE_NAMES[@]}"; do
      i=$((i + 1)); addr=$SUBNET.$i
      node_lines+="NodeName=$n NodeAddr=$addr NodeHostname=$n CPUs=8 RealMemory=8000 Gres=gpu:$NGPU State=UNKNOWN"$'\n'
    done
  fi
  local nodelist; nodelist=$(IFS=,; echo "${NODE_NAMES[*]}")

  write_file "$CONF_DIR/slurm.conf" 644 root:root <<EOF
# Generated by scripts/slurm-cluster.sh - $NODES-node test cluster. Do not edit.
ClusterName=$CLUSTER
SlurmctldHost=$HEAD($HEAD_ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd/%n
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$CONF_DIR/plugstack.conf

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
MinJobAge=60
InactiveLimit=0
Waittime=0

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HEAD_ADDR
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MailProg=/bin/true

${node_lines%$'\n'}
PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP
EOF

  write_file "$CONF_DIR/gres.conf" 644 root:root <<EOF
# Generated by scripts/slurm-cluster.sh - fake GPUs (character devices made with mknod c 1 3).
NodeName=$nodelist Name=gpu File=$STATE/dev/gpu[0-$((NGPU - 1))]
EOF

  write_file "$CONF_DIR/plugstack.conf" 644 root:root </dev/null

  write_file "$CONF_DIR/slurmdbd.conf" 600 root:root <<EOF
# Generated by scripts/slurm-cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=$HEAD
DbdAddr=$HEAD_ADDR
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

  if (( NODES > 1 )); then  # what each node's /etc/hosts says (bind-mounted inside its namespace)
    i=10
    { echo "127.0.0.1 localhost"; echo "$HEAD_ADDR $HEAD head"
      for n in "${NODE_NAMES[@]}"; do i=$((i + 1)); echo "$SUBNET.$i $n"; done
    } | write_file "$CONF_DIR/hosts" 644 root:root
    write_file "$CONF_DIR/resolv.conf" 644 root:root </dev/null
  fi
}

# ---------------------------------------------------------------------------- network (--nodes N)
netns_of() { echo "$NETNS_PREFIX$1"; }

net_up() {
  (( NODES > 1 )) || return 0
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "interface $BRIDGE already exists and this script did not create it"
  ip -o addr show | grep -q " inet $SUBNET\." && die "subnet $SUBNET.0/24 is already in use here; set SLURM_SUBNET"
  log "creating bridge $BRIDGE ($HEAD_ADDR/24) and ${#NODE_NAMES[@]} network namespaces"
  ip link add "$BRIDGE" type bridge
  echo "bridge $BRIDGE" >>"$NET_FILE"
  ip addr add "$HEAD_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local n i=10 ns veth
  for n in "${NODE_NAMES[@]}"; do
    i=$((i + 1)); ns=$(netns_of "$n"); veth=${CLUSTER}-$n
    veth=${veth:0:15}
    ip netns list | grep -qw "$ns" && die "network namespace $ns already exists and this script did not create it"
    ip netns add "$ns"
    echo "netns $ns" >>"$NET_FILE"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    echo "veth $veth" >>"$NET_FILE"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

net_down() {
  [[ -s $NET_FILE ]] || return 0
  local kind name pid
  while read -r kind name; do   # what is left in the namespaces (job steps), then the links, then the rest
    [[ $kind == netns ]] || continue
    for pid in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done <"$NET_FILE"
  while read -r kind name; do
    case $kind in
      veth) ip link del "$name" 2>/dev/null || true ;;   # both ends, now (a namespace's go lazily)
      netns) ip netns del "$name" 2>/dev/null || true ;;
    esac
  done <"$NET_FILE"
  while read -r kind name; do
    [[ $kind == bridge ]] && { ip link del "$name" 2>/dev/null || true; }
  done <"$NET_FILE"
  rm -f "$NET_FILE"
  log "removed the bridge and namespaces this script created"
}

# ---------------------------------------------------------------------------- daemons
start_munged() {
  log "starting munged"
  runuser -u munge -- munged --socket="$MUNGE_SOCK" --key-file="$MUNGE_DIR/munge.key" \
    --pid-file="${PIDFILE[munged]}" --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
    || show_logs "$LOG_DIR/munged.log" || die "munged failed to start"
  WATCH=munged wait_for "$TIMEOUT" munged munge -n --socket="$MUNGE_SOCK" || show_logs "$LOG_DIR/munged.log" || die "munged not answering"
}

# shellcheck disable=SC2120  # called with args via wait_for
mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCK" -u root "$@"; }

start_mariadbd() {
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
    --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
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
  log "starting slurmdbd"
  slurmdbd || show_logs "$LOG_DIR/slurmdbd.log" || die "slurmdbd failed to start"
  WATCH=slurmdbd wait_for "$TIMEOUT" "slurmdbd port $DBD_PORT" port_open "$DBD_PORT" "$HEAD_ADDR" \
    || show_logs "$LOG_DIR/slurmdbd.log" || die "slurmdbd not listening"
}

start_slurmctld() {
  log "starting slurmctld"
  slurmctld -f "$SLURM_CONF" || show_logs "$LOG_DIR/slurmctld.log" || die "slurmctld failed to start"
  WATCH=slurmctld wait_for "$TIMEOUT" slurmctld bash -c 'scontrol ping | grep -q UP' \
    || show_logs "$LOG_DIR/slurmctld.log" || die "slurmctld not answering"
}

start_slurmd() {  # start_slurmd <node>
  local n=$1 ns
  log "starting slurmd $n"
  if (( NODES == 1 )); then
    slurmd -f "$SLURM_CONF" -N "$n" || show_logs "$LOG_DIR/slurmd-$n.log" || die "slurmd $n failed to start"
    return 0
  fi
  # `ip netns exec` remounts /sys, which hides the cgroup mounts slurmd reads: enter the network
  # namespace with nsenter, and give the node its own hostname and /etc/hosts in a private
  # mount and UTS namespace (slave propagation: it still sees the host's shared paths).
  ns=$(netns_of "$n")
  nsenter --net="/run/netns/$ns" -- unshare --uts --mount --propagation slave -- sh -c \
    "mount --bind '$CONF_DIR/hosts' /etc/hosts && mount --bind '$CONF_DIR/resolv.conf' /etc/resolv.conf \
     && hostname '$n' && exec slurmd -f '$SLURM_CONF' -N '$n'" \
    || show_logs "$LOG_DIR/slurmd-$n.log" || die "slurmd $n failed to start"
}

# All nodes are up and schedulable. Jobs that were running across a stop/start keep them "mixed"/"allocated".
nodes_ready() {
  local states
  states=$(sinfo -h -N -o %T 2>/dev/null | sort -u) || return 1
  [[ $(sinfo -h -N -o %N 2>/dev/null | wc -l) == "${#NODE_NAMES[@]}" ]] || return 1
  ! grep -qvE '^(idle|mixed|allocated|completing)$' <<<"$states"
}

# Jobs the controller recovered from its state files: cancel them, and wait until they leave the queue.
cancel_leftover_jobs() {
  local ids
  ids=$(squeue -h -o %F | sort -un | tr '\n' ' ')  # %F: an array's id (its pending tasks fold into one line)
  [[ -n ${ids// /} ]] || return 0
  log "cancelling job(s) ${ids% } left from before the last stop (their tests are gone)"
  # shellcheck disable=SC2086  # one id per word
  scancel $ids
  wait_for "$TIMEOUT" "cancelled jobs to leave the queue" bash -c '[[ -z $(squeue -h -o %i) ]]' \
    || die "jobs ${ids% } are still in the queue after scancel"
}

running_count() {
  local d n=0
  for d in "${DAEMONS[@]}"; do pid_of "$d" >/dev/null && n=$((n + 1)); done
  echo "$n"
}

FAIL_AFTER=${SLURM_CLUSTER_FAIL_AFTER:-}
step() {  # step <function> [args]: run one start step; the fail point lets tests check the rollback
  "$@"
  [[ $FAIL_AFTER != "$1" ]] || die "failing after $1, as SLURM_CLUSTER_FAIL_AFTER asks"
}

STARTING=0
rollback() {
  (( STARTING )) || return 0
  STARTING=0
  log "start failed: stopping what it started"
  cmd_stop || true
}

cmd_start() {
  need_root
  local t0=$EPOCHREALTIME d n
  n=$(running_count)
  if (( n == ${#DAEMONS[@]} )); then log "cluster $CLUSTER already running (state dir $STATE)"; return 0; fi
  if (( n > 0 )); then log "partially running; stopping the rest first"; cmd_stop; fi
  for d in "${BINARIES[@]}"; do command -v "$d" >/dev/null || die "$d not found; run: $0 install"; done
  for d in "$CTLD_PORT:slurmctld" "$DBD_PORT:slurmdbd" "$DB_PORT:mariadbd"; do port_free "${d%%:*}" "${d#*:}"; done
  (( NODES > 1 )) || port_free "$SLURMD_PORT" slurmd

  STARTING=1
  trap rollback EXIT
  setup_state
  write_configs
  net_down   # leftovers of a run that was killed before it could clean up
  step net_up
  step start_munged
  step start_mariadbd
  step start_slurmdbd
  step start_slurmctld
  for d in "${NODE_NAMES[@]}"; do step start_slurmd "$d"; done

  WATCH=slurmctld wait_for "$TIMEOUT" "nodes ${NODE_NAMES[*]} to be up" nodes_ready || {
    scontrol show nodes >&2 || true
    show_logs "$LOG_DIR/slurmd-${NODE_NAMES[0]}.log" "$LOG_DIR/slurmctld.log" || die "nodes not up"
  }
  cancel_leftover_jobs
  log "running a smoke job on $NODES node(s)"
  timeout "$TIMEOUT" srun -N"$NODES" -n"$NODES" -t 1 -J slurm-cluster-smoke -D / true \
    || show_logs "$LOG_DIR/slurmd-${NODE_NAMES[0]}.log" "$LOG_DIR/slurmctld.log" || die "smoke job failed"
  STARTING=0
  printf '[slurm-cluster] cluster %s up on %s in %.1f s (state dir %s)\n[slurm-cluster] use it with: export SLURM_CONF=%s\n' \
    "$CLUSTER" "${NODE_NAMES[*]}" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$STATE" \
    "$SLURM_CONF" >&2
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
  net_down
  log "stopped cluster $CLUSTER"
}

cmd_status() {
  local d pid n=0
  echo "cluster $CLUSTER (SLURM_CONF=$SLURM_CONF)"
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then echo "$d: running (pid $pid)"; n=$((n + 1)); else echo "$d: stopped"; fi
  done
  if pid_of slurmctld >/dev/null; then sinfo -N -o '%N %P %T %c %m %G' || true; fi
  (( n == ${#DAEMONS[@]} )) && return 0
  (( n == 0 )) && return 3
  return 1
}

case $CMD in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) usage ;;
esac
