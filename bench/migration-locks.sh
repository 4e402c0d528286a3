#!/usr/bin/env bash
# How long each PostgreSQL schema migration holds its locks on a large installation, and what a
# concurrent statement waits meanwhile. Creates the scratch database `opentrusty_locks` (dropped
# and re-created; no other database is touched), applies migrations 1 and 2, seeds N users
# (default 1,000,000) over 100 tenants and 1,000 clients with one `user.created` audit row, a
# password, one token family, access token and refresh token each, N/4 sessions and N/10
# authorization codes, then applies migrations 3 to 6 one transaction each, as `opentrusty
# migrate` does. Per migration it prints the seconds from BEGIN to COMMIT (the longest any
# lock it takes is held), the locks that block writes it holds on tables that existed before it
# (from pg_locks, just before COMMIT) with their row counts, and the longest latency of a write
# and of a read issued every 50 ms on the table it locks while it runs. Needs psql and a server at
# 127.0.0.1:5432 that trusts the user postgres. See docs/storage.md, "Migrations".
#
#   bash bench/migration-locks.sh [USERS]      # KEEP=1 keeps the database afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
case "$N" in '' | *[!0-9]*) echo "usage: $0 [USERS]" >&2; exit 2 ;; esac
[ "$N" -ge 1000 ] || { echo "USERS must be at least 1000" >&2; exit 2; }
TENANTS=100
CLIENTS=1000
DB=opentrusty_locks
MIGRATIONS=crates/store/migrations/postgres
PSQL=(psql -X -q -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)

WORK=$(mktemp -d /tmp/opentrusty-locks.XXXXXX)
PROBES=()
cleanup() {
    touch "$WORK/stop"
    for pid in "${PROBES[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" != 1 ]; then
        "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
START=$(now)

PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -c "CREATE TABLE schema_migrations (
    version     BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL
)"

# `apply FILE`: the file and its ledger row in one transaction, as the runner does. Prints
# "<seconds from BEGIN to COMMIT>|<table:lock mode, ...>|<command tags>".
apply() {
    local file=$1 version name sum
    version=$(basename "$file" | sed 's/_.*//; s/^0*//')
    name=$(basename "$file" .sql | sed 's/^[0-9]*_//')
    sum=$(sha256sum "$file" | cut -d' ' -f1)
    "${PSQL[@]}" -d "$DB" -v file="$PWD/$file" -v version="$version" -v name="$name" \
        -v sum="$sum" >"$WORK/apply.out" <<'SQL'
SELECT string_agg(oid::text, ',') AS before FROM pg_class
    WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v') \gset
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
\set QUIET off
\i :file
\set QUIET on
INSERT INTO schema_migrations VALUES (:version, :'name', :'sum', now());
-- The strongest lock held on each table that existed before the migration.
SELECT coalesce(string_agg(t || ':' || m, ',' ORDER BY t), '') AS locks FROM (
    SELECT c.relname AS t, (array_agg(l.mode ORDER BY array_position(ARRAY['AccessShareLock',
        'RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
        'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'], l.mode) DESC))[1] AS m
    FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
      AND c.relkind = 'r' AND c.oid = ANY (string_to_array(:'before', ',')::oid[])
      AND c.relname <> 'schema_migrations'
    GROUP BY c.relname) s \gset
COMMIT;
\echo RESULT :t0 :locks
SELECT extract(epoch FROM clock_timestamp()) - :t0 AS secs \gset
\echo SECS :secs
SQL
    local secs locks tags
    secs=$(awk '/^SECS /{ printf "%.3f", $2 }' "$WORK/apply.out")
    locks=$(awk '/^RESULT /{ print $3 }' "$WORK/apply.out")
    tags=$(grep -E '^UPDATE [0-9]+$' "$WORK/apply.out" | tr '\n' ',' | sed 's/,$//' || true)
    echo "$secs|$locks|$tags"
}

# `probe NAME SQL`: issues SQL every 50 ms on one connection until $WORK/stop exists,
# recording each statement's latency (psql \timing).
probe() {
    local name=$1 sql=$2
    (
        {
            echo '\timing on'
            while [ ! -e "$WORK/stop" ]; do echo "$sql"; sleep 0.05; done
        } | "${PSQL[@]}" -d "$DB" >"$WORK/probe.$name" 2>&1
    ) &
    PROBES+=($!)
}
# `probe_report NAME`: statements, median and longest latency in ms.
probe_report() {
    { grep -o 'Time: [0-9.]* ms' "$WORK/probe.$1" || true; } | awk '{ print $2 }' | sort -n | awk '
        { v[NR] = $1 } END {
            if (NR == 0) { print "no statement completed"; exit }
            printf "%d statements, median %.1f ms, longest %.1f ms", NR, v[int((NR + 1) / 2)], v[NR] }'
    if grep -q ERROR "$WORK/probe.$1"; then echo " (error: $(grep -m1 ERROR "$WORK/probe.$1"))"; fi
}

for f in "$MIGRATIONS"/0001_*.sql "$MIGRATIONS"/0002_*.sql; do apply "$f" >/dev/null; done

echo "seeding $N users over $TENANTS tenants and $CLIENTS clients"
SEED_START=$(now)
# Every id is md5 of a name, so rows refer to each other by arithmetic instead of look-ups:
# user i is in tenant i % TENANTS; family, access token and refresh token i are user i's;
# the clients of tenant t are t, t + TENANTS, t + 2 * TENANTS, ...
"${PSQL[@]}" -d "$DB" -v n="$N" -v tenants="$TENANTS" -v clients="$CLIENTS" <<'SQL'
SET synchronous_commit = off;
\set hash '''$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNhbHRzZWVkc2FsdA$0Vq0G7P1yqf0cK6v0yH0xW2m8n0b5s3x9Z2r1t4u6wA'''
\set per_tenant (:clients / :tenants)

INSERT INTO tenants (id, name, name_key, display_name, status, created_at, updated_at)
SELECT md5('tenant:' || t)::uuid, 'Tenant ' || t, 'tenant ' || t, 'Tenant ' || t, 'active',
       now() - interval '400 days', now() - interval '400 days'
FROM generate_series(0, :tenants - 1) t;

INSERT INTO oauth_clients (id, client_id, tenant_id, name, secret_hash,
    token_endpoint_auth_method, redirect_uris, post_logout_redirect_uris, grant_types,
    allowed_scopes, access_token_format, first_party, created_at, updated_at)
SELECT md5('client:' || c)::uuid, 'client-' || c, md5('tenant:' || (c % :tenants))::uuid,
       'App ' || c,
       CASE WHEN c % 4 = 3 THEN NULL ELSE :hash END,
       CASE WHEN c % 4 = 3 THEN 'none' ELSE 'client_secret_basic' END,
       jsonb_build_array('https://app' || c || '.example/callback'),
       jsonb_build_array('https://app' || c || '.example/'),
       '["authorization_code", "refresh_token"]'::jsonb,
       '["openid", "profile", "email", "offline_access"]'::jsonb,
       CASE WHEN c % 5 = 0 THEN 'opaque' ELSE 'jwt' END, c % 10 = 0,
       now() - interval '390 days', now() - interval '390 days'
FROM generate_series(0, :clients - 1) c;

-- Users created over the past year, 2 % disabled.
CREATE TEMP TABLE u AS
SELECT i, md5('user:' || i)::uuid AS id, md5('tenant:' || (i % :tenants))::uuid AS tenant_id,
       md5('client:' || (i % :tenants + :tenants * ((i / :tenants) % :per_tenant)))::uuid AS client,
       (i % :tenants + :tenants * ((i / :tenants) % :per_tenant)) AS client_no,
       now() - make_interval(secs => (:n - i) * 31536000.0 / :n) AS created_at
FROM generate_series(0, :n - 1) i;

INSERT INTO users (id, tenant_id, email, email_normalized, email_verified, given_name,
    family_name, status, created_at, updated_at)
SELECT id, tenant_id, 'User' || i || '@example.com', 'user' || i || '@example.com', i % 10 <> 0,
       'Given' || i, 'Family' || i, CASE WHEN i % 50 = 0 THEN 'disabled' ELSE 'active' END,
       created_at, created_at
FROM u;

INSERT INTO credentials (user_id, password_hash, created_at, updated_at)
SELECT id, :hash, created_at, created_at FROM u;

INSERT INTO audit_events (id, occurred_at, tenant_id, actor_kind, actor_id, action,
    target_kind, target_id, ip, user_agent, request_id, metadata)
SELECT md5('audit:user.created:' || i)::uuid, created_at, tenant_id, 'user',
       md5('user:' || (i % :tenants))::uuid, 'user.created', 'user', id::text,
       '10.' || (i / 65536) % 256 || '.' || (i / 256) % 256 || '.' || i % 256,
       'Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0', md5('request:' || i),
       jsonb_build_object('with_password', true)
FROM u;

-- A live browser session for every fourth user, within the last day.
INSERT INTO sessions (id, token_hash, user_id, tenant_id, auth_time, created_at, last_seen_at,
    expires_at, ip, user_agent)
SELECT md5('session:' || i)::uuid, sha256(('session:' || i)::bytea), id, tenant_id,
       now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 minute',
       now() + interval '7 days', '10.0.0.1', 'Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0'
FROM u WHERE i % 4 = 0;

-- One family per user over the last 60 days: half revoked, 30 % with offline_access
-- (independently of revocation), four in five bound to a session (ended ones are gone).
INSERT INTO token_families (id, tenant_id, client_id, user_id, session_id, scope, auth_time,
    created_at, expires_at, revoked_at, revoked_reason)
SELECT md5('family:' || i)::uuid, tenant_id, client, id,
       CASE WHEN i % 5 <> 0 THEN md5('session:' || i)::uuid END,
       CASE WHEN (i / 2) % 10 < 3 THEN 'openid profile email offline_access'
            ELSE 'openid profile email' END,
       f.at, f.at, f.at + interval '30 days',
       CASE WHEN i % 2 = 0 THEN f.at + interval '1 day' END,
       CASE WHEN i % 2 = 0 THEN (ARRAY['session_ended', 'logout', 'password_changed'])[1 + i % 3] END
FROM u, LATERAL (SELECT now() - make_interval(secs => (i % 5184000)::double precision) AS at) f;

-- One access token per user: nine in ten of a family, the others client_credentials tokens
-- from before migration 4 (no user, no family).
INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, user_id, family_id, scope,
    created_at, expires_at, revoked_at)
SELECT md5('access:' || i)::uuid, sha256(('access:' || i)::bytea), tenant_id, client,
       CASE WHEN i % 10 <> 9 THEN id END,
       CASE WHEN i % 10 <> 9 THEN md5('family:' || i)::uuid END,
       CASE WHEN i % 10 <> 9 THEN 'openid profile email' ELSE 'api:read' END,
       f.at, f.at + interval '15 minutes', CASE WHEN i % 20 = 0 THEN f.at + interval '1 minute' END
FROM u, LATERAL (SELECT now() - make_interval(secs => (i % 86400)::double precision) AS at) f;

INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, rotated_at)
SELECT sha256(('refresh:' || i)::bytea), md5('family:' || i)::uuid, f.at, f.at + interval '30 days',
       CASE WHEN i % 3 = 0 THEN f.at + interval '1 hour' END
FROM u, LATERAL (SELECT now() - make_interval(secs => (i % 5184000)::double precision) AS at) f;

-- A code for every tenth family, redeemed (it names the family), with PKCE.
INSERT INTO authorization_codes (code_hash, tenant_id, client_id, user_id, session_id,
    redirect_uri, scope, nonce, code_challenge, code_challenge_method, auth_time, created_at,
    expires_at, used_at, family_id)
SELECT sha256(('code:' || i)::bytea), tenant_id, client, id,
       CASE WHEN i % 5 <> 0 THEN md5('session:' || i)::uuid END,
       'https://app' || client_no || '.example/callback', 'openid profile email',
       md5('nonce:' || i), encode(sha256(('verifier:' || i)::bytea), 'base64'), 'S256',
       f.at, f.at, f.at + interval '1 minute', f.at + interval '2 seconds',
       md5('family:' || i)::uuid
FROM u, LATERAL (SELECT now() - make_interval(secs => (i % 5184000)::double precision) AS at) f
WHERE i % 10 = 0;

DROP TABLE u;
ANALYZE;
CHECKPOINT;
SQL
echo "seeded in $(since "$SEED_START") s:"
"${PSQL[@]}" -d "$DB" -At -F ' ' -c "
    SELECT relname, n FROM (VALUES
        ('tenants', (SELECT count(*) FROM tenants)), ('users', (SELECT count(*) FROM users)),
        ('credentials', (SELECT count(*) FROM credentials)),
        ('oauth_clients', (SELECT count(*) FROM oauth_clients)),
        ('sessions', (SELECT count(*) FROM sessions)),
        ('audit_events', (SELECT count(*) FROM audit_events)),
        ('token_families', (SELECT count(*) FROM token_families)),
        ('access_tokens', (SELECT count(*) FROM access_tokens)),
        ('refresh_tokens', (SELECT count(*) FROM refresh_tokens)),
        ('authorization_codes', (SELECT count(*) FROM authorization_codes))) v (relname, n)" \
    | awk '{ printf "  %-20s %10d\n", $1, $2 }'

# The statements issued while each migration runs: a write to the table it locks (for the
# families, to one that migration 5's UPDATE rewrites: odd, offline_access) and a read of it.
T0="md5('tenant:0')::uuid" C0="md5('client:0')::uuid"
declare -A WRITE READ
WRITE[3]="INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, scope, created_at, expires_at) VALUES (gen_random_uuid(), sha256(gen_random_uuid()::text::bytea), $T0, $C0, 'api:read', now(), now() + interval '15 minutes');"
READ[3]="SELECT jti FROM access_tokens WHERE jti = md5('access:7')::uuid;"
WRITE[4]="INSERT INTO audit_events (id, occurred_at, tenant_id, actor_kind, action, metadata) VALUES (gen_random_uuid(), now(), $T0, 'system', 'probe.write', '{}');"
READ[4]="SELECT id FROM audit_events WHERE id = md5('audit:user.created:7')::uuid;"
WRITE[5]="UPDATE token_families SET expires_at = expires_at WHERE id = md5('family:1')::uuid;"
READ[5]="SELECT id FROM token_families WHERE id = md5('family:3')::uuid;"
WRITE[6]="${WRITE[5]}"
READ[6]="${READ[5]}"
declare -A WHAT=([3]="INSERT access_tokens / SELECT it by jti"
    [4]="INSERT audit_events / SELECT it by id"
    [5]="UPDATE token_families (a row the migration rewrites) / SELECT it by id"
    [6]="UPDATE token_families (one row) / SELECT it by id")

echo
printf '%-9s %-28s %8s  %s\n' migration name seconds "locks that block writes, held until COMMIT (rows)"
for f in "$MIGRATIONS"/*.sql; do
    v=$(basename "$f" | sed 's/_.*//; s/^0*//')
    [ "$v" -gt 2 ] || continue
    name=$(basename "$f" .sql | sed 's/^[0-9]*_//')
    rm -f "$WORK/stop"
    PROBES=()
    probe write "${WRITE[$v]:-SELECT 1;}"
    probe read "${READ[$v]:-SELECT 1;}"
    sleep 1
    out=$(apply "$f")
    sleep 0.5
    touch "$WORK/stop"
    wait "${PROBES[@]}" 2>/dev/null || true
    PROBES=()
    IFS='|' read -r secs locks tags <<<"$out"
    held=""
    for l in ${locks//,/ }; do
        t=${l%%:*} m=${l#*:}
        case "$m" in AccessShareLock | RowShareLock | RowExclusiveLock | ShareUpdateExclusiveLock) continue ;; esac
        rows=$("${PSQL[@]}" -d "$DB" -Atc "SELECT count(*) FROM $t")
        held+="${held:+, }$t ${m%Lock} ($rows)"
    done
    printf '%-9s %-28s %8s  %s\n' "$v" "$name" "$secs" "$held${tags:+; $tags}"
    printf '%-48s %s\n' "" "concurrent ${WHAT[$v]:-SELECT 1}:"
    printf '%-48s %s\n' "" "write $(probe_report write)"
    printf '%-48s %s\n' "" "read  $(probe_report read)"
done
echo
echo "total $(since "$START") s"
