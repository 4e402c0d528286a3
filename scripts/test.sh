#!/usr/bin/env bash
# Runs every test. On Debian it first installs what the tests need and a machine with only Rust
# lacks: OpenSSL's headers (RS256), Chromium and chromedriver (browser tests), nginx and Caddy
# (reverse-proxy tests), Patroni, etcd and HAProxy (failover test); it needs root for that and
# says what to install otherwise. The Python test tools install themselves on first use.
#
#   bash scripts/test.sh                 # every test; PostgreSQL variants report themselves skipped
#   bash scripts/test.sh --postgres      # and every PostgreSQL variant, failing if any did not run
#   bash scripts/test.sh --setup-only    # install and start what is needed, run nothing
#
# With --postgres the server is OPENTRUSTY_TEST_DATABASE_URL, or the local one
# (postgres://postgres@127.0.0.1:5432/postgres), started, or installed and set to trust the
# postgres user on 127.0.0.1, if it is not running. Other arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

postgres=false
setup_only=false
cargo_args=()
for arg in "$@"; do
    case "$arg" in
        --postgres) postgres=true ;;
        --setup-only) setup_only=true ;;
        *) cargo_args+=("$arg") ;;
    esac
done

missing=()
need() { # need COMMAND-OR-PATH PACKAGE
    if [[ "$1" == /* ]]; then [ -x "$1" ] || missing+=("$2"); else command -v "$1" >/dev/null 2>&1 || missing+=("$2"); fi
}
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
need chromium chromium
need chromedriver chromium-driver
need /usr/sbin/nginx nginx
need /usr/bin/caddy caddy
need patroni patroni
need etcd etcd-server
need etcdctl etcd-client
need /usr/sbin/haproxy haproxy

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "the tests need Debian's $*: install them (apt-get install -y $*) and run again" >&2
        exit 1
    fi
    echo "installing $* from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        apt-get update -qq
        apt-get install -y -qq "$@" >/dev/null
    }
}
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

if $postgres; then
    export OPENTRUSTY_TEST_DATABASE_URL="${OPENTRUSTY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    pg_answers() {
        command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q
    }
    if [[ "$OPENTRUSTY_TEST_DATABASE_URL" == *@127.0.0.1:5432/* ]] && ! pg_answers; then
        installed_here=false
        if ! command -v pg_ctlcluster >/dev/null 2>&1; then
            apt_install postgresql
            installed_here=true
        fi
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        if $installed_here; then
            # A cluster made for the tests: the postgres user connects over TCP without a password.
            hba="/etc/postgresql/${version}/main/pg_hba.conf"
            sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
        fi
        echo "starting PostgreSQL ${version}"
        pg_ctlcluster --skip-systemctl-redirect "${version}" main start || true
        pg_ctlcluster --skip-systemctl-redirect "${version}" main reload || true
        for _ in $(seq 1 60); do
            pg_answers && break
            sleep 1
        done
        pg_answers || { echo "PostgreSQL did not start" >&2; exit 1; }
    fi
fi

$setup_only && exit 0

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "${cargo_args[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
skipped=$(grep -c "SKIPPED (no PostgreSQL):" "$log" || true)
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
if $postgres && [ "$skipped" -gt 0 ]; then
    echo "$skipped PostgreSQL test(s) did not run although --postgres was given:" >&2
    grep "SKIPPED (no PostgreSQL):" "$log" >&2
    exit 1
fi
if [ "$skipped" -gt 0 ]; then
    echo "$skipped PostgreSQL variant(s) skipped; run with --postgres to include them"
fi
