//! The command line: subcommands, flags and the help an operator reads. Every flag that has an
//! `OPENTRUSTY_*` environment equivalent names it in its help; values are resolved and validated
//! in `config`, so an error names the flag or the variable the value came from.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "opentrusty",
    version,
    about = "OpenTrusty: a multi-tenant OAuth 2.0 / OpenID Connect identity provider",
    long_about = "OpenTrusty: a multi-tenant OAuth 2.0 / OpenID Connect identity provider.\n\n\
        Quick start (embedded SQLite, no configuration):\n    opentrusty serve all\n\n\
        Production (PostgreSQL, two processes):\n    \
        export OPENTRUSTY_DATABASE_URL=postgres://opentrusty@db/opentrusty\n    \
        export OPENTRUSTY_SECRET_KEY=$(openssl rand -base64 32)\n    \
        opentrusty migrate\n    \
        opentrusty bootstrap --email admin@example.com\n    \
        opentrusty serve auth     # port 8080\n    \
        opentrusty serve admin    # port 8081\n\n\
        Every flag can also be set with the OPENTRUSTY_* variable named in its help.",
    after_help = "Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage."
)]
pub struct Cli {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: postgres://user@host/db or sqlite://path/to/file.db
    /// [env: OPENTRUSTY_DATABASE_URL] [default: sqlite://opentrusty.db]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Most database connections this process opens [env: OPENTRUSTY_DB_MAX_CONNECTIONS]
    /// [default: 10]
    #[arg(long, global = true, value_name = "N")]
    pub db_max_connections: Option<String>,

    /// Seconds a database statement may go unanswered before its request fails as unavailable
    /// [env: OPENTRUSTY_DB_STATEMENT_TIMEOUT] [default: 60]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub db_statement_timeout: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve one plane (auth or admin) or both (all)
    #[command(long_about = "Serve HTTP.\n\n\
        auth   the authentication plane: login pages and OpenID Connect (port 8080)\n\
        admin  the management REST API (port 8081)\n\
        all    both planes on the auth port, for development; on the embedded SQLite\n       \
        database it applies pending migrations and creates a secret key by itself.\n\n\
        The mode may also come from OPENTRUSTY_MODE. `serve auth` and `serve admin` refuse to\n\
        start while migrations are pending: run `opentrusty migrate` first.")]
    Serve(ServeArgs),

    /// Same as `serve all`
    Server(ServeOptions),

    /// Apply pending schema migrations (the only command that changes the schema)
    Migrate(MigrateArgs),

    /// Create the first platform administrator (does nothing if one exists)
    #[command(
        long_about = "Create the first platform administrator: a user with no tenant \
        holding platform_admin.\n\n\
        The password comes from OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD; without it a random one is \
        generated and printed once. If a platform administrator already exists, nothing changes \
        and the command exits 0."
    )]
    Bootstrap(BootstrapCommandArgs),

    /// List or rotate the token signing keys
    #[command(subcommand)]
    Keys(KeysCommand),

    /// Delete expired sessions, codes, tokens and enrollment links once (what the janitor of
    /// every auth process does periodically)
    Cleanup,

    /// Validate the configuration of `serve <mode>` and the database, and print what it would
    /// serve; changes nothing
    #[command(
        long_about = "Validate the configuration of `serve <mode>` (same flags and \
        variables), connect to the database, check the schema and the signing keys, and print \
        what would be served. Changes nothing. Exit codes: 0 ready to serve, 1 the database is \
        unreachable or not ready, 2 invalid configuration."
    )]
    Check(ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every signing key with its status (next, active, retired)
    List,
    /// Make the next key active, retire the active one (it stays published until the tokens
    /// it signed have expired) and create a new next key
    Rotate(KeysRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    /// Algorithm whose keys to rotate: RS256, ES256 or EdDSA
    #[arg(long, default_value = "RS256", value_name = "ALG")]
    pub alg: String,

    /// File holding the secret key (instead of OPENTRUSTY_SECRET_KEY)
    /// [env: OPENTRUSTY_SECRET_KEY_FILE]
    #[arg(long, value_name = "PATH")]
    pub secret_key_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Auth,
    Admin,
    All,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which plane to serve [env: OPENTRUSTY_MODE]
    #[arg(value_enum)]
    pub mode: Option<ModeArg>,

    #[command(flatten)]
    pub options: ServeOptions,
}

#[derive(Debug, Args)]
pub struct ServeOptions {
    /// Port of the auth plane (and of both planes in `serve all`)
    /// [env: OPENTRUSTY_AUTH_PORT] [default: 8080]
    #[arg(long, value_name = "PORT")]
    pub auth_port: Option<String>,

    /// Port of the admin plane [env: OPENTRUSTY_ADMIN_PORT] [default: 8081]
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<String>,

    /// Address to listen on [env: OPENTRUSTY_BIND_ADDRESS] [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub bind_address: Option<String>,

    /// File holding the secret key (instead of OPENTRUSTY_SECRET_KEY)
    /// [env: OPENTRUSTY_SECRET_KEY_FILE]
    #[arg(long, value_name = "PATH")]
    pub secret_key_file: Option<String>,

    /// Longest wait for in-flight requests at shutdown, in seconds
    /// [env: OPENTRUSTY_SHUTDOWN_TIMEOUT] [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_timeout: Option<String>,

    /// Log format: json or text [env: OPENTRUSTY_LOG_FORMAT]
    /// [default: json for auth and admin, text for all]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Log filter, e.g. info or opentrusty=debug [env: OPENTRUSTY_LOG_LEVEL] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(flatten)]
    pub hashing: HashingArgs,

    #[command(flatten)]
    pub bootstrap: BootstrapArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub admin: AdminArgs,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Routing, proxies and operations.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Host name of the auth plane (auth.example.com): with it, requests are routed by `Host`
    /// [env: OPENTRUSTY_AUTH_DOMAIN]
    #[arg(long, value_name = "HOST")]
    pub auth_domain: Option<String>,

    /// Host name of the admin plane (api.example.com) [env: OPENTRUSTY_ADMIN_DOMAIN]
    #[arg(long, value_name = "HOST")]
    pub admin_domain: Option<String>,

    /// Comma-separated addresses or CIDR ranges of reverse proxies whose forwarded headers are
    /// believed [env: OPENTRUSTY_TRUSTED_PROXIES] [default: none]
    #[arg(long, value_name = "CIDRS")]
    pub trusted_proxies: Option<String>,

    /// The one forwarding header the trusted proxies set and the planes read: x-forwarded-for
    /// (with X-Forwarded-Proto) or forwarded (RFC 7239); the other is ignored
    /// [env: OPENTRUSTY_FORWARDED_HEADER] [default: x-forwarded-for]
    #[arg(long, value_name = "HEADER")]
    pub forwarded_header: Option<String>,

    /// Address of the Prometheus metrics listener, e.g. 127.0.0.1:9100
    /// [env: OPENTRUSTY_METRICS_ADDR] [default: off]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,

    /// Seconds a client has to send a request's head, and then its body
    /// [env: OPENTRUSTY_HEADER_READ_TIMEOUT] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub header_read_timeout: Option<String>,

    /// Seconds a keep-alive connection may wait for its next request
    /// [env: OPENTRUSTY_KEEP_ALIVE_TIMEOUT] [default: 75]
    #[arg(long, value_name = "SECONDS")]
    pub keep_alive_timeout: Option<String>,

    /// Connections open at once on the plane's listener
    /// [env: OPENTRUSTY_MAX_CONNECTIONS]
    /// [default: 10000, or fewer to fit the open-files limit]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,

    /// Seconds between janitor runs in an auth process; 0 turns it off
    /// [env: OPENTRUSTY_JANITOR_INTERVAL] [default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub janitor_interval: Option<String>,
}

/// Settings of the admin plane.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Comma-separated origins of the admin console (https://console.example.com): the only
    /// origins whose cookie-authenticated requests and CORS calls are accepted
    /// [env: OPENTRUSTY_CONSOLE_ORIGINS] [default: none]
    #[arg(long, value_name = "ORIGINS")]
    pub console_origins: Option<String>,

    /// Seconds an enrollment or password-reset link works [env: OPENTRUSTY_ENROLLMENT_TTL]
    /// [default: 259200 (72 h)]
    #[arg(long, value_name = "SECONDS")]
    pub enrollment_ttl: Option<String>,
}

/// Settings of the auth plane.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Issuer URL (https, or http on a loopback host) [env: OPENTRUSTY_ISSUER]
    /// [default: http://localhost:<auth port>]
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// Domain attribute of the session cookie, so the admin plane on a sibling host receives it
    /// [env: OPENTRUSTY_COOKIE_DOMAIN]
    #[arg(long, value_name = "DOMAIN")]
    pub cookie_domain: Option<String>,

    /// Seconds without activity after which a session ends [env: OPENTRUSTY_SESSION_IDLE_TIMEOUT]
    /// [default: 1800]
    #[arg(long, value_name = "SECONDS")]
    pub session_idle_timeout: Option<String>,

    /// Seconds after sign-in after which a session ends [env: OPENTRUSTY_SESSION_LIFETIME]
    /// [default: 86400]
    #[arg(long, value_name = "SECONDS")]
    pub session_lifetime: Option<String>,

    /// Seconds an authorization code stays redeemable [env: OPENTRUSTY_AUTH_CODE_TTL]
    /// [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub auth_code_ttl: Option<String>,

    /// Algorithm of JWT access tokens: RS256, ES256 or EdDSA
    /// [env: OPENTRUSTY_ACCESS_TOKEN_ALG] [default: RS256]
    #[arg(long, value_name = "ALG")]
    pub access_token_alg: Option<String>,

    /// Seconds an already-rotated refresh token is still accepted
    /// [env: OPENTRUSTY_REFRESH_GRACE_PERIOD] [default: 0]
    #[arg(long, value_name = "SECONDS")]
    pub refresh_grace_period: Option<String>,

    /// Failed passwords within the window that lock an account; 0 turns lockout off
    /// [env: OPENTRUSTY_LOCKOUT_THRESHOLD] [default: 5]
    #[arg(long, value_name = "N")]
    pub lockout_threshold: Option<String>,

    /// Seconds in which failures add up [env: OPENTRUSTY_LOCKOUT_WINDOW] [default: 900]
    #[arg(long, value_name = "SECONDS")]
    pub lockout_window: Option<String>,

    /// Seconds an account stays locked [env: OPENTRUSTY_LOCKOUT_DURATION] [default: 900]
    #[arg(long, value_name = "SECONDS")]
    pub lockout_duration: Option<String>,

    /// Password hashes computed at once [env: OPENTRUSTY_ARGON2_WORKERS]
    /// [default: the number of CPUs]
    #[arg(long, value_name = "N")]
    pub argon2_workers: Option<String>,

    /// Sign-ins that may wait for a hashing worker; more get 503 at once
    /// [env: OPENTRUSTY_ARGON2_QUEUE] [default: 64]
    #[arg(long, value_name = "N")]
    pub argon2_queue: Option<String>,

    /// Sign-in attempts per client address, N/SECONDS or off
    /// [env: OPENTRUSTY_RATE_LIMIT_LOGIN] [default: 10/60]
    #[arg(long, value_name = "RATE")]
    pub rate_limit_login: Option<String>,

    /// Enrollment page requests per client address [env: OPENTRUSTY_RATE_LIMIT_ENROLL]
    /// [default: 10/60]
    #[arg(long, value_name = "RATE")]
    pub rate_limit_enroll: Option<String>,

    /// Authorization requests per client address [env: OPENTRUSTY_RATE_LIMIT_AUTHORIZE]
    /// [default: 60/60]
    #[arg(long, value_name = "RATE")]
    pub rate_limit_authorize: Option<String>,

    /// Token, introspection and revocation requests per client address
    /// [env: OPENTRUSTY_RATE_LIMIT_TOKEN] [default: 1200/60]
    #[arg(long, value_name = "RATE")]
    pub rate_limit_token: Option<String>,

    /// Prefix length by which IPv6 clients share a rate-limit budget, 32 to 128
    /// [env: OPENTRUSTY_RATE_LIMIT_IPV6_PREFIX] [default: 64]
    #[arg(long, value_name = "BITS")]
    pub rate_limit_ipv6_prefix: Option<String>,
}

/// Argon2id cost of new password hashes. Older hashes keep verifying and are upgraded at the next
/// successful login.
#[derive(Debug, Args)]
pub struct HashingArgs {
    /// Argon2id memory in KiB [env: OPENTRUSTY_ARGON2_MEMORY_KIB] [default: 19456]
    #[arg(long, value_name = "KIB")]
    pub argon2_memory_kib: Option<String>,

    /// Argon2id passes [env: OPENTRUSTY_ARGON2_ITERATIONS] [default: 2]
    #[arg(long, value_name = "N")]
    pub argon2_iterations: Option<String>,

    /// Argon2id lanes [env: OPENTRUSTY_ARGON2_PARALLELISM] [default: 1]
    #[arg(long, value_name = "N")]
    pub argon2_parallelism: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// List applied and pending migrations; change nothing
    #[arg(long, conflicts_with = "dry_run")]
    pub status: bool,
    /// List what `migrate` would apply and what each step holds locked, with an estimate
    /// from the tables' sizes; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Email of the first platform administrator; `serve` creates it at start when set, as
    /// `bootstrap` does [env: OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL]. The password is read only from
    /// OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD, never from a flag.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
}

#[derive(Debug, Args)]
pub struct BootstrapCommandArgs {
    #[command(flatten)]
    pub admin: BootstrapArgs,

    #[command(flatten)]
    pub hashing: HashingArgs,
}
