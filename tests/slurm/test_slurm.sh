#!/usr/bin/env bash
# CTest label "slurm": a real single-node Slurm cluster (Debian's slurm-wlm 22.05) in a temporary folder:
# munged on a private socket and key, slurmctld + slurmd from a generated slurm.conf with this machine's CPUs and
# memory. It submits a 2-shard sweep with slurm/submit (a job array plus the dependent report job), waits with
# squeue, and checks the job states (scontrol, and sacct reading the jobcomp/filetxt record), the order of the
# jobs, the result records and the report table; then slurm/sweep.sbatch (srun --mpi=pmix via launch()) over the
# finished sweep. The daemons are stopped by PID on every exit (trap), and the folder is removed.
# Exit 0: pass; anything else: fail. Needs root or a user that may run the daemons; packages: jobs/setup --tests.
# Environment: DSGQ_BIN (default build/bin/dsgq), DSGQ_SLURM_TEST_RANKS (tasks for the sweep.sbatch step, default
# 1), DSGQ_SLURM_TEST_TIMEOUT (seconds to wait for the jobs, default 300), DSGQ_KEEP_TMP=1 keeps the folder.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
dsgq=${DSGQ_BIN:-$repo/build/bin/dsgq}
ranks=${DSGQ_SLURM_TEST_RANKS:-1}
timeout=${DSGQ_SLURM_TEST_TIMEOUT:-300}
t0=$EPOCHREALTIME

fail() { echo "test_slurm: FAIL: $*" >&2; exit 1; }
step() { printf 'test_slurm: [%6.1f s] %s\n' "$(elapsed_since "$t0")" "$*"; }
elapsed_since() { awk -v a="$EPOCHREALTIME" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

# Missing tools are a failure, not a skip: CI installs them (jobs/setup --tests).
for tool in munged mungekey munge slurmctld slurmd sbatch squeue scontrol sacct sinfo scancel awk; do
  command -v "$tool" >/dev/null || fail "'$tool' not found; run jobs/setup --tests (Debian: slurmctld slurmd slurm-client munge)"
done
[[ -x "$dsgq" ]] || fail "no dsgq binary at $dsgq (build first, or set DSGQ_BIN)"

# A Slurm job started from inside another Slurm job (a CI runner on a cluster) must not inherit the outer job.
for v in ${!SLURM_@} ${!SBATCH_@} ${!SALLOC_@} ${!SRUN_@}; do unset "$v"; done
export DSGQ_BIN=$dsgq OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsgq-slurm.XXXXXX")
chmod 755 "$tmp"   # munged wants every folder on its socket's path to be searchable by all
mkdir -p "$tmp"/{munge,state,spool,log,work,tmpfs}
chmod 755 "$tmp/munge"
munged_pid="" ctld_pid="" slurmd_pid="" ctld_children=""

# Stop what this test started, by PID: jobs first (so no dsgq outlives the cluster), then slurmd, slurmctld
# (and its slurmscriptd child), munged. On failure show the daemons' logs and the jobs' output first.
stop_pid() {  # stop_pid PID NAME: SIGTERM, up to 15 s, then SIGKILL
  local pid=$1 name=$2 i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "test_slurm: $name ($pid) ignored SIGTERM; SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? i
  trap - EXIT
  set +e
  if [[ -n "$ctld_pid" ]] && kill -0 "$ctld_pid" 2>/dev/null; then
    local left=()
    mapfile -t left < <(squeue -h -o %A 2>/dev/null)
    if (( ${#left[@]} )); then
      echo "test_slurm: cancelling leftover jobs: ${left[*]}" >&2
      scancel "${left[@]}" 2>/dev/null
      for ((i = 0; i < 60; i++)); do [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break; sleep 0.5; done
    fi
  fi
  if (( rc != 0 )); then
    for f in "$tmp"/log/* "$tmp"/work/slurm-*.out; do
      [[ -f "$f" ]] || continue
      echo "----- $f (last 40 lines)" >&2
      tail -n 40 "$f" >&2
    done
  fi
  stop_pid "$slurmd_pid" slurmd
  stop_pid "$ctld_pid" slurmctld
  for pid in $ctld_children; do kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null; done
  stop_pid "$munged_pid" munged
  if [[ "${DSGQ_KEEP_TMP:-0}" == 1 ]]; then echo "test_slurm: kept $tmp" >&2; else rm -rf "$tmp"; fi
  step "$( ((rc == 0)) && echo PASS || echo "FAIL (exit $rc)"); daemons stopped"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP   # run the EXIT trap on signals too

# --- munge: a fresh key and a private socket, so nothing touches /etc/munge or a running munged. --------------
mungekey -c -k "$tmp/munge/munge.key"
munged -F --socket="$tmp/munge/munge.sock" --key-file="$tmp/munge/munge.key" \
       --pid-file="$tmp/munge/munged.pid" --seed-file="$tmp/munge/munged.seed" \
       </dev/null >"$tmp/log/munged.log" 2>&1 &
munged_pid=$!
for ((i = 0; ; i++)); do
  munge -n -S "$tmp/munge/munge.sock" 2>/dev/null | unmunge -S "$tmp/munge/munge.sock" >/dev/null 2>&1 && break
  kill -0 "$munged_pid" 2>/dev/null || fail "munged exited (see its log above)"
  (( i < 100 )) || fail "munged not answering on $tmp/munge/munge.sock after 10 s"
  sleep 0.1
done
step "munged up (pid $munged_pid)"

# --- slurm.conf --------------------------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }   # nothing accepts a connection there
port=16817
while ! { port_free "$port" && port_free $((port + 1)); }; do
  port=$((port + 2)); (( port < 16900 )) || fail "no two free ports in 16817..16900"
done
node=$(hostname -s)
cpus=$(nproc)
mem_mib=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)   # what free -m prints, without procps
user=$(id -un)
cat > "$tmp/slurm.conf" <<EOF
# Generated by tests/slurm/test_slurm.sh: a one-node cluster for the duration of the test.
ClusterName=dsgqtest
# Addresses are 127.0.0.1 so that nothing depends on the host name resolving.
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
# munge on the private socket (auth/none also works in 22.05, but then anyone who reaches these ports may run jobs
# as any user, root included).
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
MailProg=/bin/true
# Scratch of the job steps (the PMIx plugin's spmix_appdir_*) here too, not in /tmp.
TmpFS=$tmp/tmpfs
# No cgroups (none in containers): processes tracked by parent PID, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct reads the job completion file instead (sacct -c).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$tmp/log/jobcomp.txt
# Finished jobs stay visible to scontrol for the whole test.
MinJobAge=3600
MpiDefault=none
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf   # every client command (sbatch, squeue, ...) reads this one

# --- daemons, in the foreground (-D) as children of this script, so $! is their PID. ----------------------------
slurmctld -D -f "$SLURM_CONF" </dev/null >"$tmp/log/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -N "$node" -f "$SLURM_CONF" </dev/null >"$tmp/log/slurmd.out" 2>&1 &
slurmd_pid=$!
for ((i = 0; ; i++)); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
  [[ "$state" == idle ]] && break
  kill -0 "$ctld_pid" 2>/dev/null || fail "slurmctld exited"
  kill -0 "$slurmd_pid" 2>/dev/null || fail "slurmd exited"
  (( i < 300 )) || fail "node $node not idle after 30 s (state '$state'; $(sinfo -h -R 2>/dev/null))"
  sleep 0.1
done
ctld_children=$(cat /proc/"$ctld_pid"/task/*/children 2>/dev/null || true)   # slurmscriptd
step "slurmctld (pid $ctld_pid) and slurmd (pid $slurmd_pid) up: node $node idle, $cpus CPUs, $mem_mib MiB, ports $port/$((port + 1))"

# --- the sweep: 2 calibration sets -> 2 array tasks, one at a time (%1: a 2-core machine), then the report. ------
cd "$tmp/work"
cat > sweep.toml <<'EOF'
[sweep]
name = "slurm-test"
[model]
arch = "resnet20"
[synth]
method = ["gaussian", "real"]
n_images = 16
batch = 16
[quant]
protocol = "zeroq"
bits = ["w8a8", "w4a4"]
[eval]
n_images = 500
[output]
dir = "RUNS"
EOF
submit_out=$("$repo/slurm/submit" --shards 2 --max-parallel 1 --sbatch-args "--time=00:10:00" -- \
             --config sweep.toml --threads 1) || fail "slurm/submit failed: $submit_out"
echo "$submit_out"
last=$(tail -n 1 <<< "$submit_out")
[[ "$last" =~ ^submitted\ array=([0-9]+)\ report=([0-9]+)\ shards=2\ output=(.+)$ ]] ||
  fail "unexpected last line of slurm/submit: '$last'"
array_id=${BASH_REMATCH[1]} report_id=${BASH_REMATCH[2]} outdir=${BASH_REMATCH[3]}
[[ "$outdir" == "$tmp/work/RUNS" ]] || fail "slurm/submit's output folder is '$outdir', expected $tmp/work/RUNS"
step "submitted array $array_id and report $report_id"

# --- wait for the queue to drain (squeue) ------------------------------------------------------------------------
wait_jobs() {  # wait_jobs ID,ID...: poll squeue until none of them is queued or running (sbatch --wait polls slower)
  local deadline=$((SECONDS + timeout)) queued
  while :; do
    queued=$(squeue -h -j "$1" -o '%i:%T:%r' 2>/dev/null || true)
    [[ -z "$queued" ]] && return 0
    (( SECONDS < deadline )) || { squeue; fail "jobs still queued after $timeout s: ${queued//$'\n'/ }"; }
    sleep 0.5
  done
}
wait_jobs "$array_id,$report_id"
step "queue drained"

# --- job states, order and exit codes (scontrol keeps finished jobs for MinJobAge) ------------------------------
field() { grep -o "\b$1=[^ ]*" <<< "$2" | head -n1 | cut -d= -f2-; }   # field NAME "scontrol -o line"
mapfile -t tasks < <(scontrol -o show job "$array_id")
(( ${#tasks[@]} == 2 )) || fail "array $array_id has ${#tasks[@]} task record(s), expected 2: ${tasks[*]}"
last_end="" seen_ids=""
for t in "${tasks[@]}"; do
  id=$(field ArrayTaskId "$t") st=$(field JobState "$t") ec=$(field ExitCode "$t") end=$(field EndTime "$t")
  echo "test_slurm: array task ${array_id}_$id: $st exit $ec $(field StartTime "$t") -> $end"
  [[ "$st" == COMPLETED && "$ec" == 0:0 ]] || fail "array task ${array_id}_$id is $st (exit $ec)"
  seen_ids+="$id "
  if [[ "$end" > "$last_end" ]]; then last_end=$end; fi
done
[[ "$seen_ids" == "0 1 " || "$seen_ids" == "1 0 " ]] || fail "array task ids are '$seen_ids', expected 0 and 1"
r=$(scontrol -o show job "$report_id")
st=$(field JobState "$r") ec=$(field ExitCode "$r") start=$(field StartTime "$r")
echo "test_slurm: report job $report_id: $st exit $ec $start -> $(field EndTime "$r") ($(field Dependency "$r"))"
[[ "$st" == COMPLETED && "$ec" == 0:0 ]] || fail "report job $report_id is $st (exit $ec)"
[[ ! "$start" < "$last_end" ]] || fail "report job started at $start, before the last array task ended ($last_end)"

# sacct without slurmdbd: -c reads the jobcomp/filetxt record (22.05 warns on stderr about its array fields).
acct=$(sacct -c -P -n -S 2000-01-01 --format=JobID,JobName,State 2>/dev/null) || fail "sacct -c failed"
echo "$acct" | sed 's/^/test_slurm: sacct: /'
(( $(grep -c '|dsgq-shard|COMPLETED$' <<< "$acct") == 2 )) || fail "sacct: not 2 COMPLETED dsgq-shard jobs"
grep -q "^$report_id|dsgq-report|COMPLETED$" <<< "$acct" || fail "sacct: report job $report_id not COMPLETED"

# --- what the jobs produced ---------------------------------------------------------------------------------------
for i in 0 1; do
  log="slurm-dsgq-shard-${array_id}_$i.out"
  [[ -f "$log" ]] || fail "no output file $log"
  grep -q -- "--shard $i/2 " "$log" || fail "$log: not shard $i/2"
  grep -q "sweep done: 2 points computed" "$log" || fail "$log: the shard did not compute 2 points"
done
n_results=$(find RUNS/results -maxdepth 1 -name '*.json' | wc -l)
(( n_results == 4 )) || fail "$n_results result records in RUNS/results, expected 4"
table=RUNS/report/table.md
[[ -f "$table" ]] || fail "no $table"
cat "$table"
header=$(grep -m1 '^| data |' "$table") || fail "$table has no header row"
[[ "$header" == *"| W8A8 |"* && "$header" == *"| W4A4 |"* ]] || fail "$table header lacks W8A8/W4A4: $header"
num='[0-9]+\.[0-9]+[^|]*'
for data in gaussian real; do
  grep -Eq "^\| $data \| [^|]+ \| $num \| $num \|$" "$table" || fail "$table has no row for $data with two accuracies"
done
step "array and report checked: 4 records, table rows for gaussian and real"

# --- slurm/sweep.sbatch over the finished sweep: one allocation, srun --mpi=pmix via launch(). -------------------
# DSGQ_REPO: the batch script runs as a spool copy, and the submission folder is not the repo here.
out=$(sbatch --parsable --ntasks="$ranks" --cpus-per-task=1 --time=00:10:00 --export=ALL,DSGQ_REPO="$repo" \
        "$repo/slurm/sweep.sbatch" --config sweep.toml --threads 1) || fail "sbatch slurm/sweep.sbatch failed"
sweep_id=${out%%;*}
wait_jobs "$sweep_id"
r=$(scontrol -o show job "$sweep_id")
[[ "$(field JobState "$r")" == COMPLETED ]] ||
  { cat "slurm-dsgq-sweep-$sweep_id.out"; fail "slurm/sweep.sbatch job $sweep_id is $(field JobState "$r") (exit $(field ExitCode "$r"))"; }
grep -q "4 points, 4 done, 0 to run on $ranks rank(s)" "slurm-dsgq-sweep-$sweep_id.out" ||
  { cat "slurm-dsgq-sweep-$sweep_id.out"; fail "slurm/sweep.sbatch: expected every point done on $ranks rank(s)"; }
grep -q "launch task StepId=$sweep_id.0 " "$tmp/log/slurmd.log" || fail "slurm/sweep.sbatch started no job step (srun)"
step "slurm/sweep.sbatch (job $sweep_id, $ranks task(s) via srun) found all 4 points done"
