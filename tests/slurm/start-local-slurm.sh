#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, as root, without systemd, everything under one folder (nothing in /etc).
#   tests/slurm/start-local-slurm.sh start <base folder under /tmp>   -> prints `export SLURM_CONF=...; export PATH=...`
#   tests/slurm/start-local-slurm.sh stop  <base folder>              -> scancel, then stops the daemons by their PIDs
# Needs Debian's slurmctld, slurmd, slurm-client and munge packages. Facts and pitfalls: local-slurm.md in the
# project's shared references (cred_expire=5 so a requeued job restarts within seconds; a `sacct` stand-in because
# there is no accounting daemon; the base folder must not sit under a 700 folder such as /root).
set -euo pipefail
cmd=${1:?usage: $0 start|stop BASE}
B=${2:?usage: $0 start|stop BASE}
CONF=$B/etc/slurm.conf

stop_pids() {  # TERM all at once (each daemon takes 1-2 s to exit), wait up to 5 s, then KILL; only the PIDs in the files
  local pids=() f pid
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")  # in the order given: slurmd, slurmctld, munged
  done
  for _ in $(seq 100); do
    local alive=()
    for pid in ${pids[@]+"${pids[@]}"}; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    pids=("${alive[@]}")
    sleep 0.05
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

if [ "$cmd" = stop ]; then
  if [ -f "$CONF" ]; then SLURM_CONF=$CONF scancel --full --quiet --user=root 2>/dev/null || true; fi
  stop_pids "$B/run/slurmd.pid" "$B/run/slurmctld.pid" "$B/munge/munged.pid"
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop BASE" >&2; exit 2; }
for exe in munged mungekey slurmctld slurmd sbatch scontrol; do
  command -v "$exe" >/dev/null || { echo "missing $exe: apt-get install -y slurmctld slurmd slurm-client munge" >&2; exit 3; }
done

HOST=$(hostname -s)
mkdir -p "$B"/{etc,munge,run,log,state,spool,bin}
chmod 755 "$B" "$B/munge"
[ -f "$B/munge/munge.key" ] || mungekey --create --keyfile="$B/munge/munge.key"
chmod 600 "$B/munge/munge.key"
munged --socket="$B/munge/munge.socket.2" --key-file="$B/munge/munge.key" --log-file="$B/log/munged.log" \
  --pid-file="$B/munge/munged.pid" --seed-file="$B/munge/munged.seed"

MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
cat > "$CONF" <<CONF
ClusterName=zfnet-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$B/munge/munge.socket.2,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
MailProg=/bin/true
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

# sacct stand-in (no accounting daemon): submitit polls `sacct -o JobID,State,NodeList --parsable2 -j IDS`
cat > "$B/bin/sacct" <<'SACCT'
#!/usr/bin/env bash
ids=""
while [ $# -gt 0 ]; do case "$1" in -j) ids=$2; shift 2;; *) shift;; esac; done
echo "JobID|State|NodeList"
[ -n "$ids" ] && squeue -h -r -t all -j "$ids" -o '%i|%T|%N' 2>/dev/null || true
SACCT
chmod 755 "$B/bin/sacct"

export SLURM_CONF=$CONF
slurmctld -c -f "$CONF"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
slurmd -f "$CONF"
for _ in $(seq 300); do [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && break; sleep 0.1; done
[ "$(sinfo -h -N -o %t)" = idle ] || { echo "slurmd did not come up: see $B/log" >&2; exit 4; }
echo "export SLURM_CONF=$CONF"
echo "export PATH=$B/bin:\$PATH"
