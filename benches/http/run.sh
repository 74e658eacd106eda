#!/usr/bin/env bash
# HTTP benchmark: oca versus nginx on loopback, one server core, one load-generator core.
#
#   benches/http/run.sh [--quick] [--markdown FILE] [options]      (see --help)
#
# Serves the same 64 x 2 MiB objects from oca and nginx (same TLS certificate, TLS 1.3, one
# pinned cipher suite), servers pinned to core 1, load generators to core 0, and prints per
# case: GB/s, requests/s, p99 latency, server CPU-ms per GB and server CPU-us per request (from
# /proc/PID/stat utime+stime sampled around each run), plus oca/nginx ratios. Median of the
# repetitions. Everything it starts is stopped on exit, error or Ctrl-C.
set -euo pipefail

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SELF_DIR/../.." && pwd)
COMMAND_LINE="benches/http/run.sh${*:+ $*}"
export PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------- options
QUICK=0
MARKDOWN=""
DURATION=""
REPS=""
SERVERS="nginx oca oca-ram"
CIPHER="TLS_AES_128_GCM_SHA256"
H1_CONNS=16
H2_CONNS=4
H2_STREAMS=16
OBJECTS=64
OBJECT_BYTES=$((2 << 20))
RANGE_BYTES=$((16 << 10))
PLAIN_WRK=1
SIGNED=1
KEEP=0
BUILD=1
CASE_FILTER=""
H3_CONNS=4
H3_STREAMS=16
PORT_BASE=${OCA_BENCH_PORT_BASE:-18000}

usage() {
  cat <<EOF
Usage: benches/http/run.sh [options]

Benchmarks oca against nginx on loopback: HTTPS h1 (wrk), HTTPS h2 (h2load), HTTP/3
(oca-h3-load; oca only, nginx 1.22 has no HTTP/3) and plain HTTP/1.1 (oca-load, which
discards bodies in the kernel, and wrk), each for 2 MiB whole objects and random 16 KiB-aligned
16 KiB ranges. Servers run on core 1, clients on core 0.

Options:
  --quick             one repetition of 3 s per case (smoke test)
  --markdown FILE     also write the results as markdown to FILE
  --duration SECS     seconds per run (default 8; 3 with --quick)
  --reps N            repetitions per case, median reported (default 3; 1 with --quick)
  --servers LIST      space/comma separated, from: nginx oca oca-ram (default: all three)
                        oca     = objects read from files (page cache): io_uring reads on
                                  HTTPS, sendfile on plain HTTP; ram-bytes = 0
                        oca-ram = the same objects held in oca's RAM tier (locked memory)
  --cipher SUITE      TLS 1.3 suite all clients offer (default $CIPHER)
  --h1-conns N        wrk / oca-load connections (default $H1_CONNS)
  --h2-conns N        h2load connections (default $H2_CONNS); --h2-streams N (default $H2_STREAMS)
  --h3-conns N        oca-h3-load QUIC connections (default $H3_CONNS); --h3-streams N (default $H3_STREAMS)
  --cases LIST        space/comma separated case ids to run (default: all): h1-2m h1-16k
                        h2-2m h2-16k h3-2m h3-16k plain-2m plain-16k plain-wrk-2m plain-wrk-16k
                        (the signed-URL run needs h1-16k in the list)
  --no-plain-wrk      skip the wrk runs on plain HTTP (oca-load only)
  --no-signed         skip the signed-URL run (oca, HTTPS h1, 16 KiB)
  --no-build          do not run cargo build (use existing release binaries)
  --keep              keep the temporary directory (objects, configs, logs)
  -h, --help          this text

Per-run rows (before the medians) are left in \${TMPDIR:-/tmp}/oca-bench-last-runs.tsv.
Environment: CARGO_TARGET_DIR (where release binaries are), OCA_BENCH_PORT_BASE (default
18000; ports BASE..BASE+30 on 127.0.0.1 are used), TMPDIR.
Needs root to install missing tools (apt-get install nginx-light wrk nghttp2-client).
EOF
}

die() { echo "run.sh: error: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --markdown) [[ $# -ge 2 ]] || die "--markdown needs a file"; MARKDOWN=$2; shift ;;
    --markdown=*) MARKDOWN=${1#*=} ;;
    --duration) DURATION=${2:?}; shift ;;
    --reps) REPS=${2:?}; shift ;;
    --servers) SERVERS=${2:?}; shift ;;
    --cipher) CIPHER=${2:?}; shift ;;
    --h1-conns) H1_CONNS=${2:?}; shift ;;
    --h2-conns) H2_CONNS=${2:?}; shift ;;
    --h2-streams) H2_STREAMS=${2:?}; shift ;;
    --h3-conns) H3_CONNS=${2:?}; shift ;;
    --h3-streams) H3_STREAMS=${2:?}; shift ;;
    --cases) CASE_FILTER=${2:?}; shift ;;
    --no-plain-wrk) PLAIN_WRK=0 ;;
    --no-signed) SIGNED=0 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
if [[ $QUICK == 1 ]]; then
  : "${DURATION:=3}" "${REPS:=1}"
else
  : "${DURATION:=8}" "${REPS:=3}"
fi
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "--duration must be a whole number of seconds"
[[ $REPS =~ ^[0-9]+$ && $REPS -ge 1 ]] || die "--reps must be a positive number"
SERVERS=${SERVERS//,/ }
for s in $SERVERS; do
  case "$s" in nginx|oca|oca-ram) ;; *) die "unknown server '$s' (nginx, oca, oca-ram)" ;; esac
done
[[ " $SERVERS " == *" nginx "* ]] || echo "run.sh: note: no nginx in --servers, so no ratio rows" >&2
if [[ -n $MARKDOWN ]]; then
  mkdir -p "$(dirname "$MARKDOWN")"
  MARKDOWN=$(cd "$(dirname "$MARKDOWN")" && pwd)/$(basename "$MARKDOWN")
fi

# ---------------------------------------------------------------- tools
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: run as root so they can be installed, or: sudo apt-get install -y ${missing[*]}"
  echo "run.sh: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts the packaged nginx on install; it does not take our ports, but stop it so
  # it does not share the server core.
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl stop nginx || true
  fi
fi
CORES=$(nproc)
[[ $CORES -ge 2 ]] || die "needs at least 2 cores (server on core 1, clients on core 0); this machine has $CORES"

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
if [[ $BUILD == 1 ]]; then
  echo "run.sh: cargo build --release -p oca -p oca-benches (target dir $TARGET_DIR)" >&2
  (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p oca -p oca-benches) \
    || die "cargo build failed"
fi
OCA_BIN=$TARGET_DIR/release/oca
LOAD_BIN=$TARGET_DIR/release/oca-load
H3_LOAD_BIN=$TARGET_DIR/release/oca-h3-load
[[ -x $OCA_BIN && -x $LOAD_BIN && -x $H3_LOAD_BIN ]] || die "no release binaries in $TARGET_DIR/release (build with cargo build --release -p oca -p oca-benches)"

# ---------------------------------------------------------------- cleanup
W=$(mktemp -d "${TMPDIR:-/tmp}/oca-bench.XXXXXX")
chmod 755 "$W"   # nginx workers run as an unprivileged user and must read the objects
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ $KEEP == 1 || $rc != 0 ]]; then
    echo "run.sh: files kept in $W" >&2
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- objects, certificate, keys
echo "run.sh: writing $OBJECTS objects of $OBJECT_BYTES bytes under $W/objects" >&2
mkdir -p "$W/objects/bench/r1"
: >"$W/paths.txt"
for i in $(seq 1 "$OBJECTS"); do
  f=$(printf 'seg-%05d.m4s' "$i")
  head -c "$OBJECT_BYTES" /dev/urandom >"$W/objects/bench/r1/$f"
  echo "/o/bench/r1/$f" >>"$W/paths.txt"
done
chmod -R a+rX "$W/objects"

mkdir -p "$W/tls"
# An end-entity certificate (CA:FALSE): rustls (oca-h3-load) refuses a CA certificate as the
# server's own (CaUsedAsEndEntity), which openssl req -x509 makes by default.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" 2>/dev/null || die "openssl could not make a certificate"

# Clients offer exactly one TLS 1.3 suite. wrk uses OpenSSL's defaults, which this config
# file replaces; h2load and curl get it as a flag.
cat >"$W/openssl-client.cnf" <<EOF
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = $CIPHER
EOF

printf '[bench]\nsecret = "%s"\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$W/signing-keys.toml"
ADMIN_HASH=$("$OCA_BIN" hash-token bench-admin-token)

# ---------------------------------------------------------------- ports
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NGX_HTTPS=$((PORT_BASE + 1)); NGX_HTTP=$((PORT_BASE + 2))
OCA_HTTPS=$((PORT_BASE + 11)); OCA_HTTP=$((PORT_BASE + 12)); OCA_ADMIN=$((PORT_BASE + 13))
RAM_HTTPS=$((PORT_BASE + 21)); RAM_HTTP=$((PORT_BASE + 22)); RAM_ADMIN=$((PORT_BASE + 23))
OCA_H3=$((PORT_BASE + 14)); RAM_H3=$((PORT_BASE + 24))   # UDP (HTTP/3)
for p in $NGX_HTTPS $NGX_HTTP $OCA_HTTPS $OCA_HTTP $OCA_ADMIN $RAM_HTTPS $RAM_HTTP $RAM_ADMIN; do
  port_free "$p" || die "port $p on 127.0.0.1 is in use (set OCA_BENCH_PORT_BASE)"
done
https_port() { case $1 in nginx) echo $NGX_HTTPS ;; oca) echo $OCA_HTTPS ;; oca-ram) echo $RAM_HTTPS ;; esac; }
h3_port() { case $1 in oca) echo $OCA_H3 ;; oca-ram) echo $RAM_H3 ;; esac; }
http_port() { case $1 in nginx) echo $NGX_HTTP ;; oca) echo $OCA_HTTP ;; oca-ram) echo $RAM_HTTP ;; esac; }

# ---------------------------------------------------------------- configs
oca_config() { # NAME HTTPS HTTP ADMIN RAM_BYTES H3(UDP)
  mkdir -p "$W/$1"
  cat >"$W/$1/oca.toml" <<EOF
# Written by benches/http/run.sh.
[server]
id = "$1-bench"
https-listen = "127.0.0.1:$2"
http-listen = "127.0.0.1:$3"
h3-listen = "127.0.0.1:$6"
require-token = false
worker-threads = 1
drain-deadline = "1s"

[tls]
cert = "$W/tls/cert.pem"
key = "$W/tls/key.pem"

[tokens]
keys-file = "$W/signing-keys.toml"

[admin]
listen = "127.0.0.1:$4"
token-sha256 = "$ADMIN_HASH"

[storage]
root = "$W/objects"
io-engine = "auto"
ram-bytes = "$5"

[log]
level = "warn"
access-log = false
EOF
}
oca_config oca $OCA_HTTPS $OCA_HTTP $OCA_ADMIN 0 $OCA_H3
oca_config oca-ram $RAM_HTTPS $RAM_HTTP $RAM_ADMIN 1GiB $RAM_H3

mkdir -p "$W/nginx"
cat >"$W/nginx/nginx.conf" <<EOF
# Written by benches/http/run.sh.
daemon off;
master_process on;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    open_file_cache max=1000 inactive=60s;
    types { video/iso.segment m4s; }
    default_type application/octet-stream;
    client_body_temp_path $W/nginx/body;
    proxy_temp_path $W/nginx/proxy;
    fastcgi_temp_path $W/nginx/fastcgi;
    uwsgi_temp_path $W/nginx/uwsgi;
    scgi_temp_path $W/nginx/scgi;
    server {
        listen 127.0.0.1:$NGX_HTTPS ssl http2;
        ssl_certificate $W/tls/cert.pem;
        ssl_certificate_key $W/tls/key.pem;
        ssl_protocols TLSv1.3;
        ssl_buffer_size 16k;
        location /o/ { alias $W/objects/; }
    }
    server {
        listen 127.0.0.1:$NGX_HTTP;
        location /o/ { alias $W/objects/; }
    }
}
EOF

# ---------------------------------------------------------------- start servers
# Page cache: read every object once so no run touches the disk.
cat "$W"/objects/bench/r1/* >/dev/null

declare -A SRV_PIDS   # server -> space-separated pids whose CPU is counted
start_server() {
  local s=$1 pid
  case $s in
    nginx)
      taskset -c 1 nginx -p "$W/nginx/" -e "$W/nginx/error.log" -c "$W/nginx/nginx.conf" \
        >"$W/nginx/stdout.log" 2>&1 &
      pid=$! ;;
    oca|oca-ram)
      taskset -c 1 "$OCA_BIN" serve -c "$W/$s/oca.toml" >"$W/$s/stdout.log" 2>"$W/$s/stderr.log" &
      pid=$! ;;
  esac
  PIDS+=("$pid")
  SRV_PIDS[$s]=$pid
}

server_log() {
  case $1 in
    nginx) tail -n 20 "$W/nginx/error.log" "$W/nginx/stdout.log" 2>/dev/null ;;
    *) tail -n 20 "$W/$1/stderr.log" 2>/dev/null ;;
  esac
}

wait_ready() {
  local s=$1 pid=${SRV_PIDS[$1]} code
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { server_log "$s" >&2; die "$s exited during start-up"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      "http://127.0.0.1:$(http_port "$s")/o/bench/r1/seg-00001.m4s" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  server_log "$s" >&2
  die "$s did not answer 200 on http://127.0.0.1:$(http_port "$s")/ within 30 s (last status '$code')"
}

for s in $SERVERS; do start_server "$s"; done
for s in $SERVERS; do wait_ready "$s"; done
# nginx: count the master and its worker(s).
if [[ -n ${SRV_PIDS[nginx]:-} ]]; then
  workers=$(pgrep -P "${SRV_PIDS[nginx]}" | tr '\n' ' ')
  [[ -n $workers ]] || die "nginx has no worker process"
  SRV_PIDS[nginx]="${SRV_PIDS[nginx]} $workers"
fi

# Every thread of every server process must be on core 1 (oca has runtime workers, a
# blocking pool and io_uring ring threads; all inherit taskset's mask).
check_affinity() {
  local s=$1 p t list
  for p in ${SRV_PIDS[$s]}; do
    for t in /proc/"$p"/task/*; do
      list=$(taskset -pc "${t##*/}" 2>/dev/null | sed 's/.*: //') || continue
      [[ $list == 1 ]] || die "$s thread ${t##*/} runs on cores '$list', not 1"
    done
  done
}
for s in $SERVERS; do check_affinity "$s"; done

# ---------------------------------------------------------------- correctness checks
# curl with the bench certificate and cipher; PORT maps https://localhost:PORT to loopback.
ctls() { local port=$1; shift; curl -sS --cacert "$W/tls/cert.pem" --tls13-ciphers "$CIPHER" --resolve "localhost:$port:127.0.0.1" "$@"; }
check_fetch() { # SERVER URL PROTO(1.1|2) RANGE_START(-1 = whole) FILE
  local s=$1 url=$2 proto=$3 start=$4 file=$5 out="$W/check.bin" got want opts=()
  [[ $proto == 2 ]] && opts+=(--http2) || opts+=(--http1.1)
  if [[ $start -ge 0 ]]; then
    opts+=(-H "Range: bytes=$start-$((start + RANGE_BYTES - 1))")
    want="206 $RANGE_BYTES"
    dd if="$file" of="$W/want.bin" bs="$RANGE_BYTES" skip=$((start / RANGE_BYTES)) count=1 status=none
  else
    want="200 $OBJECT_BYTES"
    cp "$file" "$W/want.bin"
  fi
  got=$(ctls "$(https_port "$s")" "${opts[@]}" -o "$out" -w '%{http_code} %{size_download} %{http_version}' "$url") \
    || die "$s: curl $url failed"
  [[ ${got% *} == "$want" ]] || die "$s: $url answered '$got', expected '$want' (HTTP/$proto)"
  [[ $url == http://* || ${got##* } == "$proto" ]] || die "$s: $url spoke HTTP/${got##* }, expected $proto"
  cmp -s "$out" "$W/want.bin" || die "$s: $url returned wrong bytes"
}
F1="$W/objects/bench/r1/seg-00001.m4s"
for s in $SERVERS; do
  hs="https://localhost:$(https_port "$s")/o/bench/r1/seg-00001.m4s"
  hp="http://127.0.0.1:$(http_port "$s")/o/bench/r1/seg-00001.m4s"
  check_fetch "$s" "$hs" 1.1 -1 "$F1"
  check_fetch "$s" "$hs" 1.1 $((5 * RANGE_BYTES)) "$F1"
  check_fetch "$s" "$hs" 2 -1 "$F1"
  check_fetch "$s" "$hs" 2 $((OBJECT_BYTES - RANGE_BYTES)) "$F1"
  check_fetch "$s" "$hp" 1.1 -1 "$F1"
  check_fetch "$s" "$hp" 1.1 $((7 * RANGE_BYTES)) "$F1"
done

# Which suite each client negotiates, asked of each server: openssl s_client under the same
# OpenSSL config as wrk (wrk sets no suites of its own), and h2load's own "Cipher:" line.
negotiated() { # PORT
  echo | OPENSSL_CONF="$W/openssl-client.cnf" timeout 10 openssl s_client -connect "127.0.0.1:$1" \
    -servername localhost 2>/dev/null | sed -n 's/^New, \(TLSv1\.[0-9]\), Cipher is \(.*\)$/\1 \2/p' | head -n1
}
declare -A CIPHER_SEEN
for s in $SERVERS; do
  c=$(negotiated "$(https_port "$s")")
  [[ $c == "TLSv1.3 $CIPHER" ]] || die "$s negotiated '$c' with an OpenSSL client, expected TLSv1.3 $CIPHER"
  CIPHER_SEEN[$s]="wrk/openssl: $c"
done

# Signed-URL paths for the token-cost run (one title-wide token, as a player would hold).
if [[ $SIGNED == 1 && " $SERVERS " == *" oca "* ]]; then
  url=$("$OCA_BIN" sign-url -c "$W/oca/oca.toml" --base https://x --ttl 2h bench/r1/seg-00001.m4s) \
    || die "oca sign-url failed"
  token=${url#https://x/t/}; token=${token%%/*}
  sed "s#^/o/#/t/$token/#" "$W/paths.txt" >"$W/paths-signed.txt"
  code=$(ctls "$OCA_HTTPS" -o /dev/null -w '%{http_code}' \
    "https://localhost:$OCA_HTTPS$(head -n1 "$W/paths-signed.txt")") || true
  [[ $code == 200 ]] || die "oca refused its own signed URL (status '$code')"
fi

# ---------------------------------------------------------------- measurement
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # PIDS... -> utime+stime of all, in clock ticks
  local total=0 p line f
  for p in "$@"; do
    line=$(<"/proc/$p/stat") || return 1
    read -ra f <<<"${line##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
busy_ticks() { # -> busy clock ticks of cores 0 and 1 together, from /proc/stat
  awk '$1 == "cpu0" || $1 == "cpu1" { for (i = 2; i <= 9; i++) if (i != 5 && i != 6) b += $i } END { print b }' /proc/stat
}
# CPU time of this shell's finished children (the load generators), in ms, into CHILD_MS.
# `times` is a builtin: run in this shell (no fork), so it sees this shell's children.
child_ms() {
  local u s
  times >"$W/times.txt"
  { read -r _ _; read -r u s; } <"$W/times.txt"
  CHILD_MS=$(( $(to_ms "$u") + $(to_ms "$s") ))
}
to_ms() { # 1m2.345s -> 62345
  local m=${1%%m*} sec=${1#*m}
  sec=${sec%s}
  echo $(( 10#$m * 60000 + 10#${sec%.*} * 1000 + 10#${sec#*.} ))
}
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -n1; }

RESULTS="$W/results.tsv"
: >"$RESULTS"
CASES=(h1-2m h1-16k h2-2m h2-16k h3-2m h3-16k plain-2m plain-16k)
[[ $PLAIN_WRK == 1 ]] && CASES+=(plain-wrk-2m plain-wrk-16k)
if [[ -n $CASE_FILTER ]]; then
  CASE_FILTER=" ${CASE_FILTER//,/ } "
  for c in $CASE_FILTER; do
    [[ " ${CASES[*]} " == *" $c "* ]] || die "unknown case '$c' in --cases (${CASES[*]})"
  done
  kept=()
  for c in "${CASES[@]}"; do [[ $CASE_FILTER == *" $c "* ]] && kept+=("$c"); done
  CASES=("${kept[@]}")
  [[ $CASE_FILTER == *" h1-16k "* ]] || SIGNED=0
fi
# HTTP/3 is oca only (nginx 1.22 has no HTTP/3): its nginx rows read n/a.
h3_case() { [[ $1 == h3-* ]]; }
case_label() {
  case $1 in
    h1-2m) echo "HTTPS h1 2MiB (wrk)" ;;
    h1-16k) echo "HTTPS h1 16KiB (wrk)" ;;
    h1-16k-signed) echo "HTTPS h1 16KiB signed URL (wrk)" ;;
    h2-2m) echo "HTTPS h2 2MiB (h2load)" ;;
    h2-16k) echo "HTTPS h2 16KiB (h2load)" ;;
    h3-2m) echo "HTTPS h3 2MiB (oca-h3-load)" ;;
    h3-16k) echo "HTTPS h3 16KiB (oca-h3-load)" ;;
    plain-2m) echo "HTTP h1 2MiB (oca-load)" ;;
    plain-16k) echo "HTTP h1 16KiB (oca-load)" ;;
    plain-wrk-2m) echo "HTTP h1 2MiB (wrk)" ;;
    plain-wrk-16k) echo "HTTP h1 16KiB (wrk)" ;;
  esac
}

# One run: sets R_REQS R_SECS R_P99MS (and R_NOTE), or dies with the reason.
run_load() { # SERVER CASE OUTFILE
  local s=$1 c=$2 out=$3 size=$OBJECT_BYTES rargs=() paths="$W/paths.txt" port line
  case $c in *16k*) size=$RANGE_BYTES; rargs=("$RANGE_BYTES" "$OBJECT_BYTES") ;; esac
  [[ $c == *signed* ]] && paths="$W/paths-signed.txt"
  case $c in
    h1-*|plain-wrk-*)
      if [[ $c == h1-* ]]; then port="https://127.0.0.1:$(https_port "$s")"; else port="http://127.0.0.1:$(http_port "$s")"; fi
      child_ms; CLI0=$CHILD_MS
      OPENSSL_CONF="$W/openssl-client.cnf" taskset -c 0 wrk -t 1 -c "$H1_CONNS" -d "${DURATION}s" --timeout 10s \
        -s "$SELF_DIR/wrk-paths.lua" "$port" -- "$paths" "${rargs[@]}" >"$out" 2>&1 \
        || { cat "$out" >&2; die "$s $c: wrk failed"; }
      child_ms; CLI1=$CHILD_MS
      line=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "$s $c: wrk printed no result"; }
      local reqs bytes errs
      reqs=$(kv requests "$line"); bytes=$(kv bytes "$line")
      errs=$(( $(kv status_errors "$line") + $(kv connect_errors "$line") + $(kv read_errors "$line") + $(kv write_errors "$line") + $(kv timeouts "$line") ))
      [[ $reqs -gt 0 ]] || { cat "$out" >&2; die "$s $c: no request completed"; }
      [[ $errs == 0 ]] || { cat "$out" >&2; die "$s $c: wrk counted $errs errors (non-2xx/3xx, socket errors or timeouts)"; }
      # Bytes read include heads and the partial responses in flight at the end: each
      # response must be the payload plus a head < 1 KiB.
      [[ $bytes -ge $((reqs * size)) && $bytes -lt $(((reqs + H1_CONNS) * (size + 1024))) ]] \
        || { cat "$out" >&2; die "$s $c: $bytes bytes for $reqs responses, expected $size each plus a head"; }
      R_REQS=$reqs
      R_SECS=$(awk -v u="$(kv duration_us "$line")" 'BEGIN { printf "%.6f", u / 1e6 }')
      R_P99MS=$(awk -v u="$(kv p99_us "$line")" 'BEGIN { printf "%.3f", u / 1e3 }')
      ;;
    h2-*)
      local hdr=() expect=200 a
      sed "s#^#https://127.0.0.1:$(https_port "$s")#" "$W/paths.txt" >"$W/h2-uris.txt"
      if [[ $c == *16k* ]]; then
        # h2load sends the same headers on every request: one random aligned range per run,
        # cycling over all objects.
        a=$(( (RANDOM % (OBJECT_BYTES / RANGE_BYTES)) * RANGE_BYTES ))
        hdr=(-H "range: bytes=$a-$((a + RANGE_BYTES - 1))")
        expect=206
      fi
      rm -f "$W/h2.log"
      child_ms; CLI0=$CHILD_MS
      taskset -c 0 h2load -t 1 -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" --tls13-ciphers="$CIPHER" \
        "${hdr[@]}" --log-file="$W/h2.log" -i "$W/h2-uris.txt" >"$out" 2>&1 \
        || { cat "$out" >&2; die "$s $c: h2load failed"; }
      child_ms; CLI1=$CHILD_MS
      grep -q '^Application protocol: h2' "$out" || { cat "$out" >&2; die "$s $c: h2load did not negotiate h2"; }
      local cph; cph=$(sed -n 's/^Cipher: //p' "$out" | head -n1)
      [[ $cph == "$CIPHER" ]] || { cat "$out" >&2; die "$s $c: h2load negotiated '$cph', expected $CIPHER"; }
      CIPHER_SEEN[$s]="${CIPHER_SEEN[$s]%%; h2load*}; h2load: $cph"
      line=$(grep '^requests: ' "$out") || { cat "$out" >&2; die "$s $c: h2load printed no summary"; }
      local done succ failed errored timeout
      read -r done succ failed errored timeout < <(sed -E 's/^requests: [0-9]+ total, [0-9]+ started, ([0-9]+) done, ([0-9]+) succeeded, ([0-9]+) failed, ([0-9]+) errored, ([0-9]+) timeout.*/\1 \2 \3 \4 \5/' <<<"$line")
      [[ $failed == 0 && $errored == 0 && $timeout == 0 && $succ -gt 0 ]] \
        || { cat "$out" >&2; die "$s $c: h2load: $line"; }
      grep -Eq '^status codes: [0-9]+ 2xx, 0 3xx, 0 4xx, 0 5xx' "$out" \
        || { cat "$out" >&2; die "$s $c: h2load saw non-2xx responses: $(grep '^status codes' "$out")"; }
      local data; data=$(sed -nE 's/^traffic: .*\(([0-9]+)\) data.*/\1/p' "$out")
      # Data bytes include the partial responses in flight at the end.
      [[ $data -ge $((succ * size)) && $data -le $(((succ + H2_CONNS * H2_STREAMS) * size)) ]] \
        || { cat "$out" >&2; die "$s $c: $data data bytes for $succ responses, expected $size each"; }
      # Per-request log: status and duration; every status must be the expected one.
      local bad; bad=$(awk -v e="$expect" '$2 != e { n++ } END { print n + 0 }' "$W/h2.log")
      [[ $bad == 0 ]] || die "$s $c: $bad responses in h2load's log were not $expect"
      R_REQS=$succ
      R_SECS=$DURATION
      R_P99MS=$(awk '{ print $3 }' "$W/h2.log" | sort -n | awk '{ a[NR] = $1 } END { i = int(0.99 * (NR - 1) + 0.5) + 1; printf "%.3f", a[i] / 1e3 }')
      ;;
    h3-*)
      local ra=()
      [[ $c == *16k* ]] && ra=(--range-bytes "$RANGE_BYTES")
      child_ms; CLI0=$CHILD_MS
      taskset -c 0 "$H3_LOAD_BIN" --addr "127.0.0.1:$(h3_port "$s")" --server-name localhost \
        --cacert "$W/tls/cert.pem" --cipher "$CIPHER" --path-prefix /o/bench/r1/seg- --objects "$OBJECTS" \
        --object-bytes "$OBJECT_BYTES" "${ra[@]}" --connections "$H3_CONNS" --streams "$H3_STREAMS" \
        --duration "$DURATION" >"$out" 2>&1 \
        || { cat "$out" >&2; die "$s $c: oca-h3-load failed or saw a wrong response"; }
      child_ms; CLI1=$CHILD_MS
      line=$(grep '^requests=' "$out") || { cat "$out" >&2; die "$s $c: oca-h3-load printed no result"; }
      [[ $(kv errors "$line") == 0 ]] || { cat "$out" >&2; die "$s $c: oca-h3-load counted errors"; }
      [[ $(kv requests "$line") -gt 0 ]] || { cat "$out" >&2; die "$s $c: no request completed"; }
      [[ $(kv bytes "$line") == $(( $(kv requests "$line") * size )) ]] \
        || { cat "$out" >&2; die "$s $c: byte count does not match $size per response"; }
      R_REQS=$(kv requests "$line"); R_SECS=$(kv secs "$line"); R_P99MS=$(kv p99_ms "$line")
      ;;
    plain-*)
      local ra=()
      [[ $c == *16k* ]] && ra=(--range-bytes "$RANGE_BYTES")
      child_ms; CLI0=$CHILD_MS
      taskset -c 0 "$LOAD_BIN" "http://127.0.0.1:$(http_port "$s")" --paths-file "$paths" \
        -c "$H1_CONNS" -d "${DURATION}s" --object-bytes "$OBJECT_BYTES" "${ra[@]}" --kv >"$out" 2>&1 \
        || { cat "$out" >&2; die "$s $c: oca-load failed or saw a wrong response"; }
      child_ms; CLI1=$CHILD_MS
      line=$(grep '^requests=' "$out") || { cat "$out" >&2; die "$s $c: oca-load printed no result"; }
      [[ $(kv errors "$line") == 0 ]] || { cat "$out" >&2; die "$s $c: oca-load counted errors"; }
      R_REQS=$(kv requests "$line"); R_SECS=$(kv secs "$line"); R_P99MS=$(kv p99_ms "$line")
      ;;
  esac
}

measure() { # SERVER CASE REP
  local s=$1 c=$2 rep=$3 t0 t1 b0 b1 w0 w1 size=$OBJECT_BYTES p
  [[ $c == *16k* ]] && size=$RANGE_BYTES
  for p in ${SRV_PIDS[$s]}; do
    kill -0 "$p" 2>/dev/null || { server_log "$s" >&2; die "$s (pid $p) is gone"; }
  done
  # shellcheck disable=SC2086
  t0=$(cpu_ticks ${SRV_PIDS[$s]}) || die "$s: cannot read /proc stats"
  b0=$(busy_ticks); w0=$(date +%s%N)
  run_load "$s" "$c" "$W/run-$s-$c-$rep.out"
  # shellcheck disable=SC2086
  t1=$(cpu_ticks ${SRV_PIDS[$s]}) || { server_log "$s" >&2; die "$s died during $c"; }
  b1=$(busy_ticks); w1=$(date +%s%N)
  # Columns: server case rep GB/s req/s p99-ms CPU-ms/GB us/req server-CPU% client-CPU% other%
  # (other = busy time of cores 0+1 used by neither the server nor the client: noise).
  awk -v s="$s" -v c="$c" -v rep="$rep" -v reqs="$R_REQS" -v secs="$R_SECS" -v p99="$R_P99MS" \
      -v size="$size" -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" -v busy=$((b1 - b0)) \
      -v wall_ms=$(((w1 - w0) / 1000000)) -v cli_ms=$((CLI1 - CLI0)) '
    BEGIN {
      gb = reqs * size / 1e9; cpu_ms = ticks * 1000 / hz
      other = busy * 1000 / hz - cpu_ms - cli_ms; if (other < 0) other = 0
      printf "%s\t%s\t%d\t%.4f\t%.0f\t%.3f\t%.1f\t%.2f\t%.0f\t%.0f\t%.0f\n", s, c, rep, gb / secs, reqs / secs,
        p99, cpu_ms / gb, cpu_ms * 1000 / reqs, 100 * cpu_ms / wall_ms, 100 * cli_ms / wall_ms, 100 * other / wall_ms
    }' >>"$RESULTS"
  tail -n1 "$RESULTS" | awk -F'\t' '{ printf "  %-8s %-16s rep %d: %7.3f GB/s %9s req/s  p99 %8.3f ms  %7.1f CPU-ms/GB  %7.2f us/req  srv %3d%%  cli %3d%%  other %3d%%\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' >&2
}

# ---------------------------------------------------------------- header
GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(cd "$REPO" && git status --porcelain 2>/dev/null | head -n1) ]] && GIT_REV="$GIT_REV (dirty tree)"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
HEADER=(
  "machine: $CORES cores, $CPU_MODEL, Linux $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
  "command: $COMMAND_LINE (repo $GIT_REV)"
  "versions: $("$OCA_BIN" --version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk $(wrk -v 2>&1 | head -n1 | awk '{ print $2 }'), $(h2load --version | head -n1), $(openssl version | awk '{ print $1, $2 }')"
  "setup: servers pinned to core 1 (every thread; oca worker-threads = 1; nginx worker_processes 1), clients to core 0; $OBJECTS objects x $OBJECT_BYTES B in the page cache; 16 KiB cases ask random ${RANGE_BYTES}-aligned ranges (h2load: one random range per run, same for all requests)"
  "clients: wrk -t1 -c$H1_CONNS; h2load -t1 -c$H2_CONNS -m$H2_STREAMS; oca-h3-load --connections $H3_CONNS --streams $H3_STREAMS (quinn + h3, rustls aws-lc-rs offering only $CIPHER; oca only); oca-load -c$H1_CONNS (bodies discarded with recv(MSG_TRUNC)); ${DURATION} s per run, median of $REPS"
  "TLS: TLS 1.3 $CIPHER offered by every client, same ECDSA P-256 certificate for both servers; nginx ssl_buffer_size 16k, sendfile on (used on plain HTTP only)"
  "oca: require-token = false (/o/{key}), access-log off; 'oca' reads files (ram-bytes = 0: io_uring reads on HTTPS, sendfile on plain), 'oca-ram' holds all objects in its RAM tier"
)
echo
for h in "${HEADER[@]}"; do echo "# $h"; done
echo

# ---------------------------------------------------------------- runs
for rep in $(seq 1 "$REPS"); do
  echo "run.sh: repetition $rep of $REPS" >&2
  for c in "${CASES[@]}"; do
    for s in $SERVERS; do
      h3_case "$c" && [[ $s == nginx ]] && continue
      measure "$s" "$c" "$rep"
    done
  done
  if [[ $SIGNED == 1 && " $SERVERS " == *" oca "* ]]; then
    measure oca h1-16k-signed "$rep"
  fi
done
[[ $SIGNED == 1 && " $SERVERS " == *" oca "* ]] && CASES=("${CASES[0]}" "${CASES[1]}" h1-16k-signed "${CASES[@]:2}")

# ---------------------------------------------------------------- report
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v s="$1" -v c="$2" -v k="$3" '$1 == s && $2 == c { print $k }' "$RESULTS" | median; }

ROWS=()    # "case|server|gbps|rps|p99|cpu_gb|us_req|srv%|cli%|other%"
for c in "${CASES[@]}"; do
  for s in $SERVERS; do
    if h3_case "$c" && [[ $s == nginx ]]; then ROWS+=("$(case_label "$c")|nginx|n/a"); continue; fi
    [[ -n $(awk -F'\t' -v s="$s" -v c="$c" '$1 == s && $2 == c' "$RESULTS") ]] || continue
    ROWS+=("$(case_label "$c")|$s|$(col "$s" "$c" 4)|$(col "$s" "$c" 5)|$(col "$s" "$c" 6)|$(col "$s" "$c" 7)|$(col "$s" "$c" 8)|$(col "$s" "$c" 9)|$(col "$s" "$c" 10)|$(col "$s" "$c" 11)")
  done
done

# Targets (from the issue), as a ratio of oca's figure to nginx's, on the figure that matters
# for the case: CPU per GB on 2 MiB objects, CPU per request on 16 KiB ranges.
target_for() { # CASE -> "metric limit"
  case $1 in
    h1-2m|h2-2m) echo "gb 0.5" ;;
    h1-16k|h2-16k) echo "req 0.7" ;;
    plain-2m|plain-wrk-2m) echo "gb 1.0" ;;
    plain-16k|plain-wrk-16k) echo "req 0.8" ;;
    *) echo "- -" ;;
  esac
}
RATIOS=()  # "case|server/nginx|cpu ratio|target|verdict"
# Within a case every response has the same payload, so the ratio of CPU per GB and the
# ratio of CPU per request are the same number: one ratio column.
if [[ " $SERVERS " == *" nginx "* ]]; then
  for c in "${CASES[@]}"; do
    h3_case "$c" && continue
    base_c=${c%-signed}
    nreq=$(col nginx "$base_c" 8)
    for s in $SERVERS; do
      [[ $s == nginx ]] && continue
      [[ -n $(awk -F'\t' -v s="$s" -v c="$c" '$1 == s && $2 == c' "$RESULTS") ]] || continue
      read -r metric limit <<<"$(target_for "$c")"
      RATIOS+=("$(awk -v c="$(case_label "$c")" -v s="$s" -v rq="$(col "$s" "$c" 8)" \
        -v nrq="$nreq" -v m="$metric" -v lim="$limit" 'BEGIN {
          r = rq / nrq
          if (m == "gb") t = sprintf("CPU/GB <= %.1fx", lim)
          else if (m == "req") t = sprintf("CPU/req <= %.1fx", lim)
          else t = "(vs nginx unsigned)"
          v = (m == "-") ? "-" : ((r <= lim) ? "met" : "MISSED")
          printf "%s|%s/nginx|%.2f|%s|%s", c, s, r, t, v }')")
    done
  done
fi

# HTTP/3 against HTTP/2 over TLS, same server, same run (issue target: CPU per GB <= 2x).
for c in h3-2m h3-16k; do
  h2c=h2-${c#h3-}
  for s in $SERVERS; do
    [[ $s == nginx ]] && continue
    [[ -n $(awk -F'\t' -v s="$s" -v c="$c" '$1 == s && $2 == c' "$RESULTS") ]] || continue
    [[ -n $(awk -F'\t' -v s="$s" -v c="$h2c" '$1 == s && $2 == c' "$RESULTS") ]] || continue
    RATIOS+=("$(awk -v c="$(case_label "$c")" -v s="$s" -v a="$(col "$s" "$c" 7)" -v b="$(col "$s" "$h2c" 7)" \
      'BEGIN { r = a / b; printf "%s|%s h3/h2 CPU per GB|%.2f|<= 2.0x|%s", c, s, r, (r <= 2.0) ? "met" : "MISSED" }')")
  done
done

print_text() {
  printf '%-34s %-8s %8s %10s %9s %10s %8s %5s %5s %6s\n' case server GB/s req/s p99-ms CPU-ms/GB us/req srv% cli% other%
  local r
  for r in "${ROWS[@]}"; do
    IFS='|' read -r c s g q p cg ur sp cp op <<<"$r"
    if [[ $g == n/a ]]; then printf '%-34s %-8s %8s %10s %9s %10s %8s %5s %5s %6s\n' "$c" "$s" n/a n/a n/a n/a n/a - - -; continue; fi
    printf '%-34s %-8s %8.3f %10.0f %9.3f %10.1f %8.2f %5.0f %5.0f %6.0f\n' "$c" "$s" "$g" "$q" "$p" "$cg" "$ur" "$sp" "$cp" "$op"
  done
  if [[ ${#RATIOS[@]} -gt 0 ]]; then
    echo
    printf '%-34s %-26s %9s  %-19s %s\n' case ratio CPU-ratio target verdict
    for r in "${RATIOS[@]}"; do
      IFS='|' read -r c s q t v <<<"$r"
      printf '%-34s %-26s %9s  %-19s %s\n' "$c" "$s" "$q" "$t" "$v"
    done
  fi
  echo
  for s in $SERVERS; do echo "negotiated ($s): ${CIPHER_SEEN[$s]}"; done
}

print_markdown() {
  local h r
  echo "### oca vs nginx, HTTP benchmark"
  echo
  for h in "${HEADER[@]}"; do echo "- $h"; done
  for s in $SERVERS; do echo "- negotiated ($s): ${CIPHER_SEEN[$s]}"; done
  echo
  echo "| case | server | GB/s | req/s | p99 ms | CPU-ms/GB | µs/req | srv % | cli % | other % |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r c s g q p cg ur sp cp op <<<"$r"
    if [[ $g == n/a ]]; then echo "| $c | $s | n/a | n/a | n/a | n/a | n/a | - | - | - |"; continue; fi
    printf '| %s | %s | %.3f | %.0f | %.3f | %.1f | %.2f | %.0f | %.0f | %.0f |\n' "$c" "$s" "$g" "$q" "$p" "$cg" "$ur" "$sp" "$cp" "$op"
  done
  if [[ ${#RATIOS[@]} -gt 0 ]]; then
    echo
    echo "| case | ratio | CPU ratio (per GB = per request) | target | verdict |"
    echo "|---|---|---:|---|---|"
    for r in "${RATIOS[@]}"; do
      IFS='|' read -r c s q t v <<<"$r"
      echo "| $c | $s | $q | $t | $v |"
    done
  fi
}

echo
print_text
if [[ -n $MARKDOWN ]]; then
  print_markdown >"$MARKDOWN"
  echo
  echo "run.sh: markdown written to $MARKDOWN" >&2
fi
cp "$RESULTS" "${TMPDIR:-/tmp}/oca-bench-last-runs.tsv" 2>/dev/null || true
