#!/usr/bin/env bash
# The benchmark suite: builds the release binaries, seeds a tenant (10,000 users, 100 clients,
# pre-issued codes and refresh tokens), starts `serve auth` and `serve admin` on PostgreSQL (or,
# with --sqlite, on an SQLite file), drives every workload with wrk on loopback (warm-up, then
# three runs; the median is reported), measures the floors of this machine (signing rates,
# Argon2id verify rate) and the reference peer (node oidc-provider) side by side, and prints one
# table. See docs/benchmarks.md.
#
#   bash bench/run.sh [--sqlite] [--secs N] [--skip-peer] [--only REGEX]
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=postgres
SECS=8
PEER=1
ONLY=.
while [ $# -gt 0 ]; do
    case "$1" in
        --sqlite) BACKEND=sqlite ;;
        --secs) SECS="$2"; shift ;;
        --skip-peer) PEER=0 ;;
        --only) ONLY="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
CONNECTIONS=16
WARMUP=2
RUNS=3
AUTH=18080 ADMIN=18081 AUTH_ES256=18082 AUTH_EDDSA=18083 PEER_PORT=3100

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk; then
    echo "installing wrk from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi

echo "building the release binaries"
cargo build --release -q -p opentrusty -p opentrusty-bench
BIN=target/release/opentrusty
TOOL=target/release/opentrusty-bench

WORK=$(mktemp -d /tmp/opentrusty-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$BACKEND" = postgres ] && [ -n "${DB_NAME:-}" ]; then
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS ${DB_NAME}" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$BACKEND" = postgres ]; then
    DB_NAME="ot_bench_$$"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE ${DB_NAME}" >/dev/null
    DB_URL="postgres://postgres@127.0.0.1:5432/${DB_NAME}${BENCH_PG_PARAMS:-}"
else
    DB_URL="sqlite://${WORK}/opentrusty.db"
fi
export OPENTRUSTY_DATABASE_URL="$DB_URL"
export OPENTRUSTY_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export OPENTRUSTY_LOG_LEVEL=warn OPENTRUSTY_BIND_ADDRESS=127.0.0.1
export OPENTRUSTY_RATE_LIMIT_LOGIN=off OPENTRUSTY_RATE_LIMIT_ENROLL=off
export OPENTRUSTY_RATE_LIMIT_AUTHORIZE=off OPENTRUSTY_RATE_LIMIT_TOKEN=off
export OPENTRUSTY_LOCKOUT_THRESHOLD=0

"$BIN" migrate >/dev/null
# Codes and refresh pools for the warm-up, each run, and the run at a fixed rate.
CODE_RUNS=$((RUNS + 2))
PACED_RATE=1500
# Enough for 6,000 exchanges/s: a run that used up its share would redeem the next run's
# codes a second time (replays: errors, and revoked families).
CODES_PER_RUN=$(( (SECS + 2) * 6000 ))
echo "seeding ($BACKEND)"
"$TOOL" seed "$DB_URL" "$WORK" 10000 100 $((CODES_PER_RUN * CODE_RUNS)) $((64 * CODE_RUNS))
# shellcheck disable=SC1091
. "$WORK/seed.env"
if [ "$BACKEND" = postgres ]; then
    # Bulk-seeded tables have no statistics yet; the planner needs them, and a vacuum now keeps
    # autovacuum off the seed during the runs (docs/benchmarks.md).
    psql -q -h 127.0.0.1 -U postgres -d "$DB_NAME" -c "VACUUM (ANALYZE)" >/dev/null
fi
split -d -l 64 "$WORK/refresh.txt" "$WORK/refresh-"
split -d -l 64 "$WORK/refresh-es256.txt" "$WORK/refresh-es256-"

start() { # name port plane [env...]
    local name=$1 port=$2 plane=$3; shift 3
    local var=OPENTRUSTY_AUTH_PORT
    [ "$plane" = admin ] && var=OPENTRUSTY_ADMIN_PORT
    env "$@" "$var=$port" OPENTRUSTY_ISSUER="http://127.0.0.1:${AUTH}" "$BIN" serve "$plane" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name}=$!"
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:${port}/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
# CPU time in clock ticks (user + system) of one process, and of every PostgreSQL process.
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# "pid ticks" per PostgreSQL process; pg_delta sums what each process present at the end used
# since the start (a process that ended in between is missed, never counted negative).
pg_ticks() {
    local pid
    for pid in $(pgrep -x postgres || true); do echo "$pid $(cpu_ticks "$pid")"; done
}
pg_delta() { # start-snapshot
    pg_ticks | awk -v start="$1" 'BEGIN { n = split(start, s, "\n"); for (i = 1; i <= n; i++) { split(s[i], f, " "); was[f[1]] = f[2] } }
        { total += $2 - ($1 in was ? was[$1] : 0) } END { print total + 0 }'
}

start auth $AUTH auth
IDLE_RSS_AUTH=$(rss_mb "$PID_auth")
start admin $ADMIN admin
IDLE_RSS_ADMIN=$(rss_mb "$PID_admin")
start auth_es256 $AUTH_ES256 auth OPENTRUSTY_ACCESS_TOKEN_ALG=ES256
start auth_eddsa $AUTH_EDDSA auth OPENTRUSTY_ACCESS_TOKEN_ALG=EdDSA

b64() { printf '%s' "$1" | base64 -w0; }
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
export BENCH_REDIRECT=$(urlenc "$BENCH_REDIRECT_URI")
export BENCH_VERIFIER BENCH_USERS
export BENCH_PASSWORD_ENC=$(urlenc "$BENCH_PASSWORD")
RETURN_TO="/oauth2/authorize?client_id=bench-web&response_type=code&scope=openid&redirect_uri=${BENCH_REDIRECT}&code_challenge=${BENCH_CHALLENGE}&code_challenge_method=S256&state=bench"
export BENCH_RETURN_TO_ENC=$(urlenc "$RETURN_TO")

# Tokens for introspection and userinfo: one code exchanged by hand.
FIRST_CODE=$(tail -n 1 "$WORK/codes.txt")
TOKENS=$(curl -fs -u bench-web:bench-web-secret \
    -d "grant_type=authorization_code&code=${FIRST_CODE}&redirect_uri=${BENCH_REDIRECT}&code_verifier=${BENCH_VERIFIER}" \
    "http://127.0.0.1:${AUTH}/oauth2/token")
USER_TOKEN=$(printf '%s' "$TOKENS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# The platform administrator's console session, for the admin list.
SESSION=$(curl -fs -D - -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"admin@bench.example\",\"password\":\"${BENCH_PASSWORD}\"}" \
    "http://127.0.0.1:${AUTH}/api/v1/auth/login" | sed -n 's/^[Ss]et-[Cc]ookie: \(ot_session=[^;]*\).*/\1/p' | head -n 1)
[ -n "$SESSION" ] || { echo "could not sign in to the console" >&2; exit 1; }

# One wrk run: prints "req/s p50_ms p99_ms errors [codes/s]".
wrk_once() { # seconds url script
    local out
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$1s" --latency -s "bench/wrk/$3" "$2")
    echo "$out" | python3 -c '
import re, sys
t = sys.stdin.read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    if not m: return float("nan")
    v = float(m.group(1)); return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
codes = re.search(r"Codes: (\d+) in ([\d.]+) s", t)
extra = " %.1f" % (int(codes.group(1)) / float(codes.group(2))) if codes else ""
print("%.1f %.2f %.2f %d%s" % (rps, ms("50%"), ms("99%"), errors, extra))
'
}

RESULTS="$WORK/results.txt"
: >"$RESULTS"
# record name pid server0 pg0 run...: one table row from wrk_once lines, with the median run by
# throughput (but the errors of all runs) and the CPU per answered request of the server and of
# PostgreSQL since the snapshots server0 (cpu_ticks) and pg0 (pg_ticks).
record() {
    local name=$1 pid=$2 server0=$3 pg0=$4
    shift 4
    local cpu median all
    cpu=$(printf '%s\n' "$@" | awk -v secs="$SECS" -v tick="$TICK_US" \
        -v server=$(($(cpu_ticks "$pid") - server0)) -v pg="$(pg_delta "$pg0")" \
        '{ n += ($5 != "" ? $5 : $1) * secs } END { printf "%.0f / %.0f", server * tick / n, pg * tick / n }')
    # The median run's figures, with the errors of all runs (a failure in any run shows).
    median=$(printf '%s\n' "$@" | sort -n -k1 | sed -n "$((($# + 1) / 2))p" |
        awk -v errors="$(printf '%s\n' "$@" | awk '{ n += $4 } END { print n + 0 }')" '{ $4 = errors; print }')
    all=$(printf '%s\n' "$@" | awk '{printf "%s%.0f", (NR > 1 ? " / " : ""), ($5 != "" ? $5 : $1)}')
    echo "$name|$median|$all|$(rss_mb "$pid")|$cpu" >>"$RESULTS"
    echo "  $name: $median ($all) cpu µs/request server / PostgreSQL: $cpu"
}
# measure name pid url script: warm-up, three runs, median by throughput.
measure() {
    local name=$1 pid=$2 url=$3 script=$4 runs=()
    [[ "$name" =~ $ONLY ]] || return 0
    BENCH_OFFSET=0 BENCH_REFRESH="${REFRESH_PREFIX:-}00" wrk_once "$WARMUP" "$url" "$script" >/dev/null
    local server0 pg0
    server0=$(cpu_ticks "$pid") pg0=$(pg_ticks)
    for i in $(seq 1 "$RUNS"); do
        runs+=("$(BENCH_OFFSET=$((i * CODES_PER_RUN)) BENCH_REFRESH="${REFRESH_PREFIX:-}0$i" \
            wrk_once "$SECS" "$url" "$script")")
    done
    record "$name" "$pid" "$server0" "$pg0" "${runs[@]}"
}
# measure_paced name pid url script: one run on a schedule of PACED_RATE requests/s (the
# budget's "p99 at that rate"), with its own codes and refresh tokens.
measure_paced() {
    local name="$1 at ${PACED_RATE}/s" pid=$2 url=$3 script=$4
    [[ "$name" =~ $ONLY ]] || return 0
    local server0 pg0 run
    server0=$(cpu_ticks "$pid") pg0=$(pg_ticks)
    run=$(BENCH_RATE=$PACED_RATE BENCH_OFFSET=$(((RUNS + 1) * CODES_PER_RUN)) \
        BENCH_REFRESH="${REFRESH_PREFIX:-}0$((RUNS + 1))" wrk_once "$SECS" "$url" "$script")
    record "$name" "$pid" "$server0" "$pg0" "$run"
}

echo "workloads: wrk -t1 -c${CONNECTIONS}, ${WARMUP} s warm-up, ${RUNS} × ${SECS} s"
export BENCH_PATHS="/.well-known/openid-configuration /.well-known/jwks.json"
measure "discovery + JWKS" "$PID_auth" "http://127.0.0.1:${AUTH}/" get.lua
export BENCH_BASIC=$(b64 bench-cc:bench-cc-secret) BENCH_BODY="grant_type=client_credentials&scope=api"
measure "client_credentials, RS256" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/token" form.lua
measure "client_credentials, ES256" "$PID_auth_es256" "http://127.0.0.1:${AUTH_ES256}/oauth2/token" form.lua
measure "client_credentials, EdDSA" "$PID_auth_eddsa" "http://127.0.0.1:${AUTH_EDDSA}/oauth2/token" form.lua
# Each code exchange and refresh signs two tokens (access and ID): measured with RS256 keys,
# then with ES256 access tokens and an ES256 client.
export BENCH_BASIC=$(b64 bench-web:bench-web-secret) BENCH_CODES="$WORK/codes.txt" REFRESH_PREFIX="$WORK/refresh-"
measure "authorization-code exchange, RS256" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/token" code.lua
measure_paced "authorization-code exchange, RS256" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/token" code.lua
measure "refresh with rotation, RS256" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/token" refresh.lua
measure_paced "refresh with rotation, RS256" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/token" refresh.lua
export BENCH_BASIC=$(b64 bench-web-es256:bench-web-secret) BENCH_CODES="$WORK/codes-es256.txt" REFRESH_PREFIX="$WORK/refresh-es256-"
measure "authorization-code exchange, ES256" "$PID_auth_es256" "http://127.0.0.1:${AUTH_ES256}/oauth2/token" code.lua
measure_paced "authorization-code exchange, ES256" "$PID_auth_es256" "http://127.0.0.1:${AUTH_ES256}/oauth2/token" code.lua
measure "refresh with rotation, ES256" "$PID_auth_es256" "http://127.0.0.1:${AUTH_ES256}/oauth2/token" refresh.lua
measure_paced "refresh with rotation, ES256" "$PID_auth_es256" "http://127.0.0.1:${AUTH_ES256}/oauth2/token" refresh.lua
export BENCH_BASIC=$(b64 bench-web:bench-web-secret)
export BENCH_BODY="token=${USER_TOKEN}"
measure "introspection" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/introspect" form.lua
export BENCH_TOKEN="$USER_TOKEN"
measure "userinfo" "$PID_auth" "http://127.0.0.1:${AUTH}/oauth2/userinfo" bearer.lua
measure "password login (logins/s)" "$PID_auth" "http://127.0.0.1:${AUTH}/" login.lua
export BENCH_COOKIE="$SESSION"
measure "admin user list (50 of 10,000)" "$PID_admin" \
    "http://127.0.0.1:${ADMIN}/api/v1/tenants/${TENANT_ID}/users?limit=50" cookie.lua

echo "floors (this machine, $(nproc) cores)"
FLOORS=$("$TOOL" floors 3)
echo "$FLOORS" | sed 's/^/  /'

PEER_RESULTS="$WORK/peer.txt"
: >"$PEER_RESULTS"
if [ "$PEER" = 1 ]; then
    if [ ! -d bench/peer/node_modules ]; then
        (cd bench/peer && npm ci --no-audit --no-fund --silent)
    fi
    (cd bench/peer && PORT=$PEER_PORT exec node server.js) >"$WORK/peer.log" 2>&1 &
    PIDS+=($!)
    PEER_PID=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:${PEER_PORT}/.well-known/openid-configuration" >/dev/null 2>&1 && break
        sleep 0.1
    done
    PEER_NODE=$(pgrep -P "$PEER_PID" node || echo "$PEER_PID")
    RESULTS_SAVED="$RESULTS"
    RESULTS="$PEER_RESULTS"
    export BENCH_PATHS="/.well-known/openid-configuration /jwks"
    measure "discovery + JWKS" "$PEER_NODE" "http://127.0.0.1:${PEER_PORT}/" get.lua
    export BENCH_BASIC=$(b64 bench:bench-secret) BENCH_BODY="grant_type=client_credentials&scope=api"
    measure "client_credentials, RS256" "$PEER_NODE" "http://127.0.0.1:${PEER_PORT}/token" form.lua
    RESULTS="$RESULTS_SAVED"
fi

python3 - "$RESULTS" "$PEER_RESULTS" "$BACKEND" "$IDLE_RSS_AUTH" "$IDLE_RSS_ADMIN" <<EOF
import sys
results, peer_file, backend, idle_auth, idle_admin = sys.argv[1:6]
floors = {}
for line in """$FLOORS""".splitlines():
    f = line.split()
    if f[0] == "sign":
        floors[f[1]] = (float(f[2]), float(f[3]))
    else:
        floors["argon2"] = (float(f[-2]), float(f[-1]))
        argon = " ".join(f[1:-2])
peer = {}
for line in open(peer_file):
    name, median, runs, rss, cpu = line.rstrip("\n").split("|")
    peer[name] = float(median.split()[0])
print()
print("Backend: %s; idle RSS: auth %s MB, admin %s MB" % (backend, idle_auth, idle_admin))
print("Floors (1 core / all cores): " + ", ".join(
    "%s %.0f / %.0f signatures/s" % (k, *floors[k]) for k in ("RS256", "ES256", "EdDSA"))
    + "; Argon2id %s verify %.1f / %.1f per s" % (argon, *floors["argon2"]))
print()
print("| workload | req/s (median) | runs | p50 ms | p99 ms | errors | RSS MB | CPU µs/req server / PostgreSQL | vs. peer | vs. floor |")
print("|---|---|---|---|---|---|---|---|---|---|")
for line in open(results):
    name, median, runs, rss, cpu = line.rstrip("\n").split("|")
    f = median.split()
    rps = float(f[4]) if len(f) > 4 else float(f[0])
    vs_peer = vs_floor = ""
    if name in peer:
        vs_peer = "%.2f×" % (rps / peer[name])
    if name == "client_credentials, RS256":
        vs_floor = "%.0f %%" % (100 * rps / floors["RS256"][1])
    if name.startswith("client_credentials, ES256"):
        vs_peer = "%.2f× peer RS256" % (rps / peer["client_credentials, RS256"]) if "client_credentials, RS256" in peer else ""
        vs_floor = "%.0f %%" % (100 * rps / floors["ES256"][1])
    if name.startswith("client_credentials, EdDSA"):
        vs_peer = "%.2f× peer RS256" % (rps / peer["client_credentials, RS256"]) if "client_credentials, RS256" in peer else ""
        vs_floor = "%.0f %%" % (100 * rps / floors["EdDSA"][1])
    if " at " in name:
        pass
    elif name.endswith("exchange, RS256") or name.endswith("rotation, RS256"):
        vs_floor = "%.0f %% (2 signatures)" % (100 * rps / (floors["RS256"][1] / 2))
    if name.endswith("exchange, ES256") or name.endswith("rotation, ES256"):
        vs_floor = "%.0f %% (2 signatures)" % (100 * rps / (floors["ES256"][1] / 2))
    if name.startswith("password login"):
        vs_floor = "%.0f %%" % (100 * rps / floors["argon2"][1])
    print("| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |" % (name, rps, runs, f[1], f[2], f[3], rss, cpu, vs_peer, vs_floor))
for line in open(peer_file):
    name, median, runs, rss, cpu = line.rstrip("\n").split("|")
    f = median.split()
    print("| peer: %s | %.0f | %s | %s | %s | %s | %s | %s | | |" % (name, float(f[0]), runs, f[1], f[2], f[3], rss, cpu.split(" / ")[0]))
EOF
