#!/usr/bin/env bash
# An emulated cluster on one machine: N Linux network namespaces ("hosts") joined by veth pairs
# through a bridge, each host's link limited by tc (rate and one-way latency), and a command run
# under mpirun with one or more ranks per host. Ranks talk over TCP on those links only, so every
# byte the exchange moves crosses a rate-limited link. The namespaces and the bridge are always
# removed, also when the run fails or is interrupted.
#
#   sudo bash scripts/cluster.sh [options] -- PROGRAM [ARGS...]
#     --hosts N            hosts (namespaces), default 2
#     --ranks-per-host R   ranks on each host, default 1
#     --rate RATE          each host's link, both directions (tc units: 100mbit, 1gbit, 10gbit;
#                          default 1gbit; "none": no limit)
#     --delay DELAY        one-way latency added at each host's link (tc netem, where the kernel
#                          has it; default 0)
#     --fault kill:H:S     S seconds after the ranks started, kill host H's ranks (not its daemon)
#     --fault cut:H:S      S seconds after the ranks started, take host H's link down
#     --check              only check that namespaces can be made here (exit 0), or say why not
#                          (exit 77)
#
# PROGRAM runs with OMP_NUM_THREADS=1 unless set. The exit status is mpirun's; with --fault, the
# lines "fault: the surviving ranks ended X s after the fault" and "fault: job ended Y s after the
# fault" say how long the other ranks and mpirun took (an mpirun still waiting for a cut host's
# daemon 20 s after the ranks ended is stopped, and said so). A launch that has not started a
# rank on every host within 10 s is retried, up to 4 times (OpenMPI 4.1 stalls now and then).
# Needs root (network namespaces) and OpenMPI's mpirun; exits 77 with a reason where namespaces
# cannot be made (ctest counts that as skipped).
set -euo pipefail

hosts=2
per_host=1
rate=1gbit
delay=0
fault=""
check_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hosts) hosts="$2"; shift 2 ;;
    --ranks-per-host) per_host="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --delay) delay="$2"; shift 2 ;;
    --fault) fault="$2"; shift 2 ;;
    --check) check_only=1; shift ;;
    --) shift; break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$hosts" =~ ^[0-9]+$ && "$hosts" -ge 1 && "$hosts" -le 64 ]] ||
  { echo "cluster.sh: invalid --hosts '$hosts' (1..64)" >&2; exit 2; }
[[ "$per_host" =~ ^[0-9]+$ && "$per_host" -ge 1 ]] ||
  { echo "cluster.sh: invalid --ranks-per-host '$per_host' (>= 1)" >&2; exit 2; }
if [[ -n "$fault" && ! "$fault" =~ ^(kill|cut):[0-9]+:[0-9.]+$ ]]; then
  echo "cluster.sh: invalid --fault '$fault' (kill:HOST:SECONDS or cut:HOST:SECONDS)" >&2; exit 2
fi
[[ $check_only -eq 1 || $# -gt 0 ]] || { echo "cluster.sh: no program given (after --)" >&2; exit 2; }

skip() { echo "cluster.sh: skipped: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "network namespaces need root"
command -v ip >/dev/null || skip "the ip command (iproute2) is missing"
command -v tc >/dev/null || skip "the tc command (iproute2) is missing"
command -v mpirun >/dev/null || skip "mpirun is missing"

# Names unique to this run (interface names: at most 15 characters).
tag="sd$$"
bridge="${tag}br"
control="${tag}c"  # where mpirun runs: on the bridge, but not on any host's link
ns_name() { echo "${tag}h$1"; }
work=$(mktemp -d)
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e  # remove everything, whatever fails on the way
  for ((h = 0; h < hosts; h++)); do
    local ns
    ns=$(ns_name "$h")
    if [[ -e "/run/netns/$ns" ]]; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns delete "$ns" 2>/dev/null || true
    fi
  done
  if [[ -e "/run/netns/$control" ]]; then
    ip netns pids "$control" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$control" 2>/dev/null || true
  fi
  ip link delete "$bridge" 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$(ns_name 0)" 2>/dev/null || skip "cannot create a network namespace here"
ip link add "$bridge" type bridge 2>/dev/null || skip "cannot create a bridge here"
ip link set "$bridge" up
# Bytes per second of a tc rate ("100mbit", "1gbit", "10gbit", "500kbit").
rate_bytes() {
  local value unit
  value=$(sed -E 's/^([0-9.]+).*/\1/' <<< "$1")
  unit=$(sed -E 's/^[0-9.]+//' <<< "$1")
  case "$unit" in
    kbit) awk -v v="$value" 'BEGIN{printf "%d", v * 125}' ;;
    mbit) awk -v v="$value" 'BEGIN{printf "%d", v * 125000}' ;;
    gbit) awk -v v="$value" 'BEGIN{printf "%d", v * 125000000}' ;;
    *) echo "cluster.sh: invalid --rate '$1' (e.g. 100mbit, 1gbit, 10gbit, or none)" >&2; exit 2 ;;
  esac
}
# shape NAMESPACE-OR-"" DEVICE LATENCY: the link's rate (tbf; the bucket holds 1 ms of traffic,
# at least one 64 KiB segment) and LATENCY (netem, where the kernel has it) on DEVICE's egress.
shape() {
  local run=()
  [[ -n "$1" ]] && run=(ip netns exec "$1")
  if [[ "$3" != 0 && "$3" != 0ms ]]; then
    "${run[@]}" tc qdisc add dev "$2" root handle 1: netem delay "$3" limit 100000 2>/dev/null ||
      { echo "cluster.sh: --delay $3 needs tc netem, which this kernel lacks (sch_netem); use --delay 0" >&2; exit 2; }
    [[ "$rate" == none ]] ||
      "${run[@]}" tc qdisc add dev "$2" parent 1: handle 2: tbf rate "$rate" \
        burst "$burst" latency 100ms
  elif [[ "$rate" != none ]]; then
    "${run[@]}" tc qdisc add dev "$2" root tbf rate "$rate" burst "$burst" latency 100ms
  fi
}
if [[ "$rate" != none ]]; then
  burst=$(rate_bytes "$rate")
  burst=$((burst / 1000 > 65536 ? burst / 1000 : 65536))
fi
for ((h = 0; h < hosts; h++)); do
  ns=$(ns_name "$h")
  [[ $h -eq 0 ]] || ip netns add "$ns"
  ip link add "${tag}v$h" type veth peer name "${tag}p$h"
  ip link set "${tag}p$h" netns "$ns"
  ip netns exec "$ns" ip link set "${tag}p$h" name eth0
  # IPv4 only: a daemon that tries a link-local IPv6 address of mpirun first can stall the launch.
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
  ip netns exec "$ns" ip addr add "10.231.$((h / 250)).$((h % 250 + 1))/16" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip link set lo up
  ip link set "${tag}v$h" master "$bridge" up
  # Out of the host: its latency and rate; into it: its rate.
  shape "$ns" eth0 "$delay" || skip "tc cannot limit a link here (tbf: sch_tbf missing?)"
  shape "" "${tag}v$h" 0 || skip "tc cannot limit a link here (tbf: sch_tbf missing?)"
done
ip netns add "$control"
ip link add "${tag}vc" type veth peer name "${tag}pc"
ip link set "${tag}pc" netns "$control"
ip netns exec "$control" ip link set "${tag}pc" name eth0
ip netns exec "$control" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
ip netns exec "$control" ip addr add 10.231.255.254/16 dev eth0
ip netns exec "$control" ip link set eth0 up
ip netns exec "$control" ip link set lo up
ip link set "${tag}vc" master "$bridge" up

# A new bridge port and veth carrier take a moment: wait until every host reaches mpirun's
# namespace (the ranks' daemons connect back to it there), at most 10 s.
reach() {  # reach NAMESPACE ADDRESS PORT: a TCP connection, or a refusal, comes back
  local said
  said=$(ip netns exec "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>&1) && return 0
  [[ "$said" == *refused* ]]
}
for ((h = 0; h < hosts; h++)); do
  for ((try = 0; ; try++)); do
    reach "$(ns_name "$h")" 10.231.255.254 9 && break
    [[ $try -lt 100 ]] || { echo "cluster.sh: host $h cannot reach mpirun's namespace" >&2; exit 1; }
    sleep 0.1
  done
done
if [[ $check_only -eq 1 ]]; then
  echo "cluster.sh: $hosts namespaces, a bridge and tc rate limits work here"
  exit 0
fi

# mpirun's remote shell: "ip netns exec HOST" in place of ssh.
agent="$work/netns-rsh"
cat > "$agent" <<'EOF'
#!/bin/sh
host="$1"
shift
exec ip netns exec "$host" /bin/sh -c "$*"
EOF
chmod +x "$agent"
hostfile="$work/hosts"
for ((h = 0; h < hosts; h++)); do echo "$(ns_name "$h") slots=$per_host"; done > "$hostfile"

echo "cluster.sh: $hosts hosts x $per_host rank(s), links $rate, added latency $delay" >&2
# Whether every host runs at least one process that is not its daemon: the ranks started.
ranks_started() {
  local h pid found
  for ((h = 0; h < hosts; h++)); do
    found=0
    for pid in $(ip netns pids "$(ns_name "$h")" 2>/dev/null); do
      [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" =~ ^(orted|sh|ip)$ ]] || { found=1; break; }
    done
    [[ $found -eq 1 ]] || return 1
  done
}
# OpenMPI 4.1's launch through the namespaces stalls now and then (about 1 in 40 here: a daemon
# never reports back, though its launch command succeeded); such a launch is killed and tried
# again, up to 4 times. A stall is a job that has not started a rank on every host within 10 s.
for ((attempt = 1; ; attempt++)); do
  start=$(date +%s.%N)
  ip netns exec "$control" mpirun --allow-run-as-root --oversubscribe --bind-to none \
    --hostfile "$hostfile" -np $((hosts * per_host)) --map-by slot \
    --mca plm_rsh_agent "$agent" --mca btl tcp,self --mca btl_tcp_if_include eth0 \
    --mca oob_tcp_if_include eth0 --mca routed direct --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
    -x OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" -x PATH ${LD_LIBRARY_PATH:+-x LD_LIBRARY_PATH} \
    "$@" &
  job=$!
  stalled=1
  for ((tick = 0; tick < 100; tick++)); do
    if ! kill -0 "$job" 2>/dev/null || ranks_started; then stalled=0; break; fi
    sleep 0.1
  done
  [[ $stalled -eq 1 ]] || break
  kill -9 "$job" 2>/dev/null || true
  for ((h = 0; h < hosts; h++)); do
    ip netns pids "$(ns_name "$h")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  ip netns pids "$control" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  wait "$job" 2>/dev/null || true
  [[ $attempt -lt 4 ]] || { echo "cluster.sh: mpirun did not start the ranks in 4 tries" >&2; exit 1; }
  echo "cluster.sh: mpirun's launch stalled (no rank on some host after 10 s); trying again" >&2
done
fault_at=""
if [[ -n "$fault" ]]; then
  IFS=: read -r kind victim after <<< "$fault"
  [[ "$victim" -lt "$hosts" ]] || { echo "cluster.sh: --fault host $victim of $hosts" >&2; exit 2; }
  sleep "$after"
  if kill -0 "$job" 2>/dev/null; then
    fault_at=$(date +%s.%N)
    if [[ "$kind" == kill ]]; then
      echo "cluster.sh: fault: killing host $victim's processes" >&2
      # Its ranks, not its daemon (orted): as when a rank's process dies.
      for pid in $(ip netns pids "$(ns_name "$victim")"); do
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" =~ ^(mpirun|orted|orterun)$ ]] || kill -9 "$pid" 2>/dev/null || true
      done
    else
      echo "cluster.sh: fault: taking host $victim's link down" >&2
      ip link set "${tag}v$victim" down
    fi
  fi
fi
# After a fault: when the surviving hosts' ranks have all ended, and whether mpirun follows. A
# host whose link is down can leave mpirun waiting for its daemon (OpenMPI 4.1; the keepalive
# above usually ends that within seconds): 20 s after the last rank ended, mpirun is stopped, and
# said so.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
survivors_running() {
  local h pid
  for ((h = 0; h < hosts; h++)); do
    [[ $h -eq $victim ]] && continue
    for pid in $(ip netns pids "$(ns_name "$h")" 2>/dev/null); do
      [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" =~ ^(orted|sh|ip)$ ]] || return 0
    done
  done
  return 1
}
if [[ -n "$fault_at" ]]; then
  ranks_ended=""
  while kill -0 "$job" 2>/dev/null; do
    if [[ -z "$ranks_ended" ]] && ! survivors_running; then
      ranks_ended=$(date +%s.%N)
      echo "cluster.sh: fault: the surviving ranks ended $(elapsed "$fault_at") s after the fault" >&2
    fi
    if [[ -n "$ranks_ended" ]] &&
       awk -v a="$ranks_ended" -v b="$(date +%s.%N)" 'BEGIN{exit !(b - a > 20)}'; then
      echo "cluster.sh: fault: mpirun still waits for the lost host's daemon 20 s after the ranks ended; stopping it" >&2
      kill -9 "$job" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  # mpirun ended first: the ranks had ended by then.
  [[ -n "$ranks_ended" ]] ||
    echo "cluster.sh: fault: the surviving ranks ended $(elapsed "$fault_at") s after the fault" >&2
fi
set +e
wait "$job" 2>/dev/null
status=$?
set -e
if [[ -n "$fault_at" ]]; then
  echo "cluster.sh: fault: job ended $(elapsed "$fault_at") s after the fault (exit status $status)" >&2
fi
echo "cluster.sh: job took $(elapsed "$start") s (exit status $status)" >&2
exit "$status"
