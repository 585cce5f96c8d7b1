# shellcheck shell=bash
# Helpers for scripts/demo: run local servers as child process groups on 127.0.0.1, probe
# them without curl or nc (bash's /dev/tcp), and stop exactly what was started.
#
# Every process is started with `setsid`, so it leads its own process group: stopping it
# signals that group (the JVM or binary and anything it forked) and nothing else. The
# registry of what we started lives in the arrays below; nothing is ever found by name.

# name -> pid (= process group id) of what this script started and has not stopped.
declare -A STACK_PIDS=()
# name -> the command line, to restart it (chaos mode).
declare -A STACK_CMDS=()
# name -> log file.
declare -A STACK_LOGS=()
# Start order, so stop_all can stop in reverse.
STACK_ORDER=()

stack_log() { printf '%s demo: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
stack_die() { stack_log "error: $*"; exit 1; }

# start_proc NAME LOGFILE CMD... — starts CMD in its own session/process group, output to
# LOGFILE (appended), and records it. Environment: whatever is exported / prefixed.
start_proc() {
  local name=$1 log=$2; shift 2
  setsid "$@" >>"$log" 2>&1 </dev/null &
  local pid=$!
  STACK_PIDS[$name]=$pid
  STACK_LOGS[$name]=$log
  STACK_CMDS[$name]=$(printf '%q ' "$@")
  local seen=0 n
  for n in "${STACK_ORDER[@]}"; do [ "$n" = "$name" ] && seen=1; done
  [ $seen = 1 ] || STACK_ORDER+=("$name")
}

# restart_proc NAME — starts NAME again with the command line it was first started with.
restart_proc() {
  local name=$1
  local log=${STACK_LOGS[$name]}
  eval "start_proc \"\$name\" \"\$log\" ${STACK_CMDS[$name]}"
}

# is_running NAME — whether the process we started under NAME is alive.
is_running() {
  local pid=${STACK_PIDS[$1]:-}
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# kill_proc NAME SIGNAL — signals NAME's process group; SIGKILL also reaps and forgets it.
kill_proc() {
  local name=$1 sig=$2 pid=${STACK_PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -s "$sig" -- "-$pid" 2>/dev/null || true
  if [ "$sig" = KILL ]; then
    wait "$pid" 2>/dev/null || true
    unset 'STACK_PIDS[$name]'
  fi
}

# stop_proc NAME [GRACE_SECONDS] — SIGTERM to the group, SIGKILL after the grace period.
stop_proc() {
  local name=$1 grace=${2:-10} pid=${STACK_PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -s TERM -- "-$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # The group may outlive its leader (forked children): make sure it is gone.
  kill -s KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'STACK_PIDS[$name]'
}

# stop_all — stops everything still registered, in reverse start order.
stop_all() {
  local i name
  for ((i = ${#STACK_ORDER[@]} - 1; i >= 0; i--)); do
    name=${STACK_ORDER[$i]}
    if [ -n "${STACK_PIDS[$name]:-}" ]; then
      stop_proc "$name" 10
    fi
  done
}

# port_in_use PORT — whether something accepts connections on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port START — prints the first port >= START that nothing listens on.
free_port() {
  local p=$1
  while port_in_use "$p"; do p=$((p + 1)); done
  echo "$p"
}

# zk_word PORT WORD — sends a ZooKeeper four-letter word, prints the answer (2 s budget).
zk_word() {
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' _ "$1" "$2" 2>/dev/null
}

# zk_mode PORT — leader, follower or standalone while serving; empty otherwise.
zk_mode() {
  zk_word "$1" srvr | sed -n 's/^Mode: //p'
}

# http_status HOST_PORT PATH — prints the HTTP status code of GET PATH (000 if no answer).
http_status() {
  local code
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
  code=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
    IFS=" " read -r _ code _ <&3 && echo "$code"' _ "$1" "$2" 2>/dev/null) || true
  echo "${code:-000}"
}

# wait_for DESCRIPTION SECONDS CMD... — polls CMD every 0.2 s until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local i
  for ((i = 0; i < secs * 5; i++)); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  stack_log "$what: not ready after ${secs}s"
  return 1
}
