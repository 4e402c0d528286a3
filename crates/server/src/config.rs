//! Settings from flags and `OPENTRUSTY_*` variables, validated before anything starts. A flag
//! wins over its variable; an empty variable counts as unset. A bad value stops start-up with one
//! line naming the flag or variable it came from and what is wrong (exit code 2).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opentrusty_core::email::Email;
use opentrusty_core::password;
use opentrusty_core::secret::MasterKey;
use opentrusty_password::{HashParams, PasswordHasher};
use opentrusty_store::{Backend, ConnectOptions};

use crate::cli::{Flags, ModeArg};
use crate::settings::{self as S, Setting, WhenUnset};

/// A setting that cannot be used, named by where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag or variable (`--auth-port`, `OPENTRUSTY_AUTH_PORT`).
    pub name: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn error(name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.to_owned(),
        problem: problem.into(),
    }
}

/// Where settings come from besides flags: the process environment, or a fixed map in tests.
pub trait Env {
    fn get(&self, var: &str) -> Result<Option<String>, ConfigError>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, var: &str) -> Result<Option<String>, ConfigError> {
        match std::env::var(var) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(error(var, "is not valid UTF-8")),
        }
    }
}

/// A value and the name of the flag or variable that supplied it.
struct Given {
    value: String,
    name: String,
}

/// The value given for `setting`: its flag, else its variable, else nothing.
fn given(env: &dyn Env, setting: &Setting, flags: &Flags) -> Result<Option<Given>, ConfigError> {
    if let Some(v) = flags.of(setting) {
        return Ok(Some(Given {
            value: v.to_owned(),
            name: setting.flag_name(),
        }));
    }
    Ok(env.get(setting.var)?.map(|value| Given {
        value,
        name: setting.var.to_owned(),
    }))
}

/// The value of a setting that has one when unset (`WhenUnset::Value`): given, or that one,
/// read exactly like a given value.
fn value(env: &dyn Env, setting: &Setting, flags: &Flags) -> Result<Given, ConfigError> {
    if let Some(g) = given(env, setting, flags)? {
        return Ok(g);
    }
    match setting.when_unset {
        WhenUnset::Value(v) => Ok(Given {
            value: v.to_owned(),
            name: setting.var.to_owned(),
        }),
        WhenUnset::Computed(_) | WhenUnset::Nothing(_) => Err(error(setting.var, "is required")),
    }
}

/// A number-valued setting with a value when unset, checked by `valid`.
fn number<T: std::str::FromStr>(
    env: &dyn Env,
    setting: &Setting,
    flags: &Flags,
    what: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    read_number(value(env, setting, flags)?, what, valid)
}

/// `g` read as a number checked by `valid`, or `default` when nothing was given (for settings
/// whose value when unset is worked out at start).
fn parse_number<T: std::str::FromStr>(
    g: Option<Given>,
    default: T,
    what: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match g {
        None => Ok(default),
        Some(g) => read_number(g, what, valid),
    }
}

fn read_number<T: std::str::FromStr>(
    g: Given,
    what: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match g.value.trim().parse::<T>() {
        Ok(v) if valid(&v) => Ok(v),
        _ => Err(error(&g.name, format!("{:?} is not {what}", g.value))),
    }
}

/// Which planes a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auth,
    Admin,
    All,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auth => "auth",
            Mode::Admin => "admin",
            Mode::All => "all",
        }
    }
}

/// Resolves the mode from the positional argument or `OPENTRUSTY_MODE`.
pub fn mode(env: &dyn Env, arg: Option<ModeArg>) -> Result<Mode, ConfigError> {
    if let Some(m) = arg {
        return Ok(match m {
            ModeArg::Auth => Mode::Auth,
            ModeArg::Admin => Mode::Admin,
            ModeArg::All => Mode::All,
        });
    }
    match env.get(S::MODE.var)?.as_deref().map(str::trim) {
        Some("auth") => Ok(Mode::Auth),
        Some("admin") => Ok(Mode::Admin),
        Some("all") => Ok(Mode::All),
        Some(other) => Err(error(
            S::MODE.var,
            format!("{other:?} is not a mode; use auth, admin or all"),
        )),
        None => Err(error(
            S::MODE.var,
            "is not set and no mode was given; run `opentrusty serve auth`, `serve admin` or `serve all`",
        )),
    }
}

/// Where the database is and how many connections to open.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub backend: Backend,
    pub connect: ConnectOptions,
}

impl DatabaseSettings {
    /// The SQLite file, when the database is one.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        opentrusty_store::sqlite_file(&self.url).ok().flatten()
    }
}

pub fn database(env: &dyn Env, flags: &Flags) -> Result<DatabaseSettings, ConfigError> {
    let url = value(env, &S::DATABASE_URL, flags)?;
    let (url, name) = (url.value.trim().to_owned(), url.name);
    let backend = Backend::of_url(&url).ok_or_else(|| {
        error(
            &name,
            "must start with postgres:// or sqlite:// (for example sqlite://opentrusty.db)",
        )
    })?;
    if backend == Backend::Sqlite {
        opentrusty_store::sqlite_file(&url).map_err(|e| error(&name, e.to_string()))?;
    }
    let max_connections: u32 = number(
        env,
        &S::DB_MAX_CONNECTIONS,
        flags,
        "a number of connections from 1 to 1000",
        |n| (1..=1000).contains(n),
    )?;
    let statement_deadline: u64 = number(
        env,
        &S::DB_STATEMENT_TIMEOUT,
        flags,
        "a number of seconds from 1 to 3600",
        |n| (1..=3600).contains(n),
    )?;
    Ok(DatabaseSettings {
        url,
        backend,
        connect: ConnectOptions {
            max_connections,
            statement_deadline: std::time::Duration::from_secs(statement_deadline),
            ..ConnectOptions::default()
        },
    })
}

/// Argon2id parameters, checked by building a hasher with them.
pub fn hashing(env: &dyn Env, flags: &Flags) -> Result<PasswordHasher, ConfigError> {
    let memory = value(env, &S::ARGON2_MEMORY_KIB, flags)?;
    let memory_name = memory.name.clone();
    let params = HashParams {
        memory_kib: read_number(memory, "a memory size in KiB from 8192 to 4194304", |m| {
            (8192..=4_194_304).contains(m)
        })?,
        iterations: number(
            env,
            &S::ARGON2_ITERATIONS,
            flags,
            "a number of passes from 1 to 64",
            |n| (1..=64).contains(n),
        )?,
        parallelism: number(
            env,
            &S::ARGON2_PARALLELISM,
            flags,
            "a number of lanes from 1 to 16",
            |n| (1..=16).contains(n),
        )?,
    };
    PasswordHasher::new(params).map_err(|e| error(&memory_name, e.message))
}

/// Who `bootstrap` (or `serve` at start) makes the first platform administrator.
#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    pub email: Email,
    /// `None`: generate one and print it once.
    pub password: Option<String>,
}

/// The bootstrap settings, or `None` when no administrator email is configured.
pub fn bootstrap(env: &dyn Env, flags: &Flags) -> Result<Option<BootstrapSettings>, ConfigError> {
    let Some(email) = given(env, &S::BOOTSTRAP_ADMIN_EMAIL, flags)? else {
        return Ok(None);
    };
    let parsed = Email::parse(&email.value).map_err(|e| error(&email.name, e.message))?;
    let password = env.get(S::BOOTSTRAP_ADMIN_PASSWORD.var)?;
    if let Some(p) = &password {
        password::check_policy(p, parsed.as_str())
            .map_err(|e| error(S::BOOTSTRAP_ADMIN_PASSWORD.var, e.message))?;
    }
    Ok(Some(BootstrapSettings {
        email: parsed,
        password,
    }))
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Configured by the operator.
    Configured(MasterKey),
    /// Development only (`serve all` on SQLite): read from, or created at, this file.
    DevelopmentFile(PathBuf),
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub mode: Mode,
    pub database: DatabaseSettings,
    pub bind: IpAddr,
    pub auth_port: u16,
    pub admin_port: u16,
    pub secret: SecretSource,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub hasher: PasswordHasher,
    pub bootstrap: Option<BootstrapSettings>,
    pub auth: opentrusty_auth::AuthSettings,
    pub admin: AdminConfig,
    pub ops: OpsConfig,
    pub connections: crate::connections::ConnectionLimits,
}

/// Routing, proxies and operations.
#[derive(Debug, Clone, Default)]
pub struct OpsConfig {
    pub auth_domain: Option<String>,
    pub admin_domain: Option<String>,
    pub trusted_proxies: opentrusty_web::proxy::TrustedProxies,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `None`: the janitor does not run.
    pub janitor_interval: Option<Duration>,
}

/// A host name: letters, digits, hyphens and dots, lowercased, without a trailing dot.
fn hostname(g: &Given) -> Result<String, ConfigError> {
    let d = g.value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(d)
    } else {
        Err(error(&g.name, format!("{:?} is not a host name", g.value)))
    }
}

fn ops(env: &dyn Env, flags: &Flags, public_ports: &[u16]) -> Result<OpsConfig, ConfigError> {
    let auth_domain = given(env, &S::AUTH_DOMAIN, flags)?
        .map(|g| hostname(&g))
        .transpose()?;
    let admin_domain = match given(env, &S::ADMIN_DOMAIN, flags)? {
        None => None,
        Some(g) => {
            let d = hostname(&g)?;
            if auth_domain.as_deref() == Some(d.as_str()) {
                return Err(error(&g.name, "must differ from the auth domain"));
            }
            Some(d)
        }
    };
    let trusted_proxies = match given(env, &S::TRUSTED_PROXIES, flags)? {
        None => Default::default(),
        Some(g) => {
            let mut ranges = Vec::new();
            for item in g.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                ranges.push(opentrusty_web::proxy::Cidr::parse(item).ok_or_else(|| {
                    error(
                        &g.name,
                        format!("{item:?} is not an address or CIDR range (10.0.0.0/8)"),
                    )
                })?);
            }
            opentrusty_web::proxy::TrustedProxies::new(ranges)
        }
    };
    let header = value(env, &S::FORWARDED_HEADER, flags)?;
    let trusted_proxies = trusted_proxies.with_header(
        opentrusty_web::proxy::ForwardedHeader::parse(&header.value).ok_or_else(|| {
            error(
                &header.name,
                format!(
                    "{:?} is not x-forwarded-for or forwarded (the header your proxy sets)",
                    header.value
                ),
            )
        })?,
    );
    let metrics_addr = match given(env, &S::METRICS_ADDR, flags)? {
        None => None,
        Some(g) => {
            let addr: std::net::SocketAddr = g.value.trim().parse().map_err(|_| {
                error(
                    &g.name,
                    format!("{:?} is not an address like 127.0.0.1:9100", g.value),
                )
            })?;
            if public_ports.contains(&addr.port()) {
                return Err(error(
                    &g.name,
                    "must not use a port of the public listeners",
                ));
            }
            Some(addr)
        }
    };
    let janitor_secs = number(
        env,
        &S::JANITOR_INTERVAL,
        flags,
        "a number of seconds from 0 (off) to 86400",
        |s| *s <= 86400,
    )?;
    Ok(OpsConfig {
        auth_domain,
        admin_domain,
        trusted_proxies,
        metrics_addr,
        janitor_interval: (janitor_secs > 0).then(|| Duration::from_secs(janitor_secs)),
    })
}

/// Descriptors kept for everything but client connections: the database pool (added to this),
/// the listeners, the metrics listener's few connections, SQLite's files, logs.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Connections per listener unless configured, or fewer to fit the open-files limit.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// Timeouts and the connection cap of the public listener. `open_files` is the process's soft
/// RLIMIT_NOFILE (`None`: unlimited); the cap must leave room for `db_pool` connections and the
/// reserve beside it, or the process would run out of descriptors before it stops accepting.
fn connection_limits(
    env: &dyn Env,
    flags: &Flags,
    open_files: Option<u64>,
    db_pool: u32,
) -> Result<crate::connections::ConnectionLimits, ConfigError> {
    let seconds = |setting: &Setting, max: u64| {
        number(
            env,
            setting,
            flags,
            &format!("a number of seconds from 1 to {max}"),
            |v| (1..=max).contains(v),
        )
        .map(Duration::from_secs)
    };
    let header_read_timeout = seconds(&S::HEADER_READ_TIMEOUT, 300)?;
    let keep_alive_timeout = seconds(&S::KEEP_ALIVE_TIMEOUT, 3600)?;
    let reserved = RESERVED_DESCRIPTORS + u64::from(db_pool);
    let ceiling = open_files.map(|limit| limit.saturating_sub(reserved));
    let max = given(env, &S::MAX_CONNECTIONS, flags)?;
    let max_connections = match (max, ceiling) {
        (None, Some(ceiling)) if ceiling < 16 => {
            return Err(error(
                S::MAX_CONNECTIONS.var,
                format!(
                    "the process may open only {} files (RLIMIT_NOFILE), too few to serve: \
                     raise the limit (LimitNOFILE= in the systemd unit) to at least {}",
                    open_files.unwrap_or_default(),
                    reserved + 16
                ),
            ));
        }
        (None, ceiling) => {
            ceiling.map_or(DEFAULT_MAX_CONNECTIONS, |c| c.min(DEFAULT_MAX_CONNECTIONS))
        }
        (Some(g), ceiling) => {
            let name = g.name.clone();
            let n = parse_number(
                Some(g),
                0u64,
                "a number of connections from 1 to 1000000",
                |n| (1..=1_000_000).contains(n),
            )?;
            if let Some(ceiling) = ceiling
                && n > ceiling
            {
                return Err(error(
                    &name,
                    format!(
                        "{n} connections need more descriptors than the process may open \
                         ({} (RLIMIT_NOFILE), {reserved} of them kept for the database pool and \
                         the process): set at most {ceiling}, or raise the limit \
                         (LimitNOFILE= in the systemd unit)",
                        open_files.unwrap_or_default()
                    ),
                ));
            }
            n
        }
    };
    Ok(crate::connections::ConnectionLimits {
        header_read_timeout,
        keep_alive_timeout,
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
    })
}

/// The admin plane's own settings (it also reads the issuer and session idle timeout).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub console_origins: Vec<String>,
    pub enrollment_ttl_secs: i64,
}

impl ServeSettings {
    /// What the admin plane is given.
    pub fn admin_settings(&self) -> opentrusty_admin::AdminSettings {
        opentrusty_admin::AdminSettings {
            console_origins: self.admin.console_origins.clone(),
            session_idle_secs: self.auth.session_idle_secs,
            auth_base_url: self.auth.issuer.clone(),
            enrollment_ttl_secs: self.admin.enrollment_ttl_secs,
        }
    }
}

/// The admin plane's settings.
fn admin(env: &dyn Env, flags: &Flags) -> Result<AdminConfig, ConfigError> {
    let console_origins = match given(env, &S::CONSOLE_ORIGINS, flags)? {
        None => Vec::new(),
        Some(g) => {
            let mut origins = Vec::new();
            for item in g.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                origins.push(console_origin(item).ok_or_else(|| {
                    error(
                        &g.name,
                        format!(
                            "{item:?} is not an origin: write scheme://host[:port] with https \
                             (http only on a loopback host) and no path"
                        ),
                    )
                })?);
            }
            origins
        }
    };
    let enrollment_ttl_secs = number(
        env,
        &S::ENROLLMENT_TTL,
        flags,
        "a number of seconds from 300 to 2592000 (30 days)",
        |v| (300..=30 * 86400).contains(v),
    )?;
    Ok(AdminConfig {
        console_origins,
        enrollment_ttl_secs,
    })
}

/// The exact text browsers send in `Origin` for `item`, if it is an acceptable console origin.
fn console_origin(item: &str) -> Option<String> {
    let url = url::Url::parse(item).ok()?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    let scheme_ok = url.scheme() == "https"
        || (url.scheme() == "http" && opentrusty_oidc::redirect::is_loopback(&url));
    if !bare
        || !scheme_ok
        || !url.username().is_empty()
        || item.trim_end_matches('/').len() != url.origin().ascii_serialization().len()
    {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

fn port(env: &dyn Env, setting: &Setting, flags: &Flags) -> Result<u16, ConfigError> {
    number(env, setting, flags, "a port number (0-65535)", |_| true)
}

pub fn serve(
    env: &dyn Env,
    mode: Mode,
    database: DatabaseSettings,
    flags: &Flags,
) -> Result<ServeSettings, ConfigError> {
    let auth_port = port(env, &S::AUTH_PORT, flags)?;
    let admin_port = port(env, &S::ADMIN_PORT, flags)?;
    let bind: IpAddr = {
        let g = value(env, &S::BIND_ADDRESS, flags)?;
        g.value
            .trim()
            .parse()
            .map_err(|_| error(&g.name, format!("{:?} is not an IP address", g.value)))?
    };
    let shutdown_secs: u64 = number(
        env,
        &S::SHUTDOWN_TIMEOUT,
        flags,
        "a number of seconds from 0 to 3600",
        |s| *s <= 3600,
    )?;
    let log_format = match given(env, &S::LOG_FORMAT, flags)? {
        None if mode == Mode::All => LogFormat::Text,
        None => LogFormat::Json,
        Some(g) => match g.value.trim() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(error(&g.name, format!("{other:?} is not json or text"))),
        },
    };
    let log_filter = {
        let g = value(env, &S::LOG_LEVEL, flags)?;
        tracing_subscriber::EnvFilter::try_new(g.value.trim())
            .map_err(|e| error(&g.name, format!("is not a log filter: {e}")))?;
        g.value.trim().to_owned()
    };
    let secret = secret(env, mode, &database, flags)?;
    let admin = admin(env, flags)?;
    let mut auth = auth(env, auth_port, flags)?;
    auth.console_origins = admin.console_origins.clone();
    let connections = connection_limits(
        env,
        flags,
        crate::connections::open_files_limit(),
        database.connect.max_connections,
    )?;
    Ok(ServeSettings {
        connections,
        mode,
        bind,
        auth_port,
        admin_port,
        secret,
        shutdown_timeout: Duration::from_secs(shutdown_secs),
        log_format,
        log_filter,
        hasher: hashing(env, flags)?,
        bootstrap: bootstrap(env, flags)?,
        database,
        auth,
        admin,
        ops: ops(
            env,
            flags,
            &match mode {
                Mode::Auth | Mode::All => vec![auth_port],
                Mode::Admin => vec![admin_port],
            },
        )?,
    })
}

/// The auth plane's settings.
fn auth(
    env: &dyn Env,
    auth_port: u16,
    flags: &Flags,
) -> Result<opentrusty_auth::AuthSettings, ConfigError> {
    let issuer = match given(env, &S::ISSUER, flags)? {
        None => format!("http://localhost:{auth_port}"),
        Some(g) => {
            let value = g.value.trim().trim_end_matches('/').to_owned();
            let url = url::Url::parse(&value)
                .map_err(|_| error(&g.name, format!("{:?} is not an absolute URL", g.value)))?;
            let loopback_http =
                url.scheme() == "http" && opentrusty_oidc::redirect::is_loopback(&url);
            if url.scheme() != "https" && !loopback_http {
                return Err(error(
                    &g.name,
                    "must be an https URL (http is allowed only on a loopback host)",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                return Err(error(
                    &g.name,
                    "must not carry a query, a fragment or credentials",
                ));
            }
            value
        }
    };
    let cookie_secure = !issuer.starts_with("http://");
    let cookie_domain = match given(env, &S::COOKIE_DOMAIN, flags)? {
        None => None,
        Some(g) => {
            let d = g.value.trim().trim_start_matches('.').to_ascii_lowercase();
            let valid = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(error(
                    &g.name,
                    format!("{:?} is not a domain name", g.value),
                ));
            }
            Some(d)
        }
    };
    let seconds = |setting: &Setting, max: i64| {
        number(
            env,
            setting,
            flags,
            &format!("a number of seconds from 1 to {max}"),
            |v| (1..=max).contains(v),
        )
    };
    Ok(opentrusty_auth::AuthSettings {
        issuer,
        cookie_secure,
        cookie_domain,
        session_idle_secs: seconds(&S::SESSION_IDLE_TIMEOUT, 30 * 86400)?,
        session_lifetime_secs: seconds(&S::SESSION_LIFETIME, 365 * 86400)?,
        code_ttl_secs: seconds(&S::AUTH_CODE_TTL, 600)?,
        refresh_grace_secs: number(
            env,
            &S::REFRESH_GRACE_PERIOD,
            flags,
            "a number of seconds from 0 to 300",
            |v| (0..=300).contains(v),
        )?,
        access_token_alg: {
            let g = value(env, &S::ACCESS_TOKEN_ALG, flags)?;
            opentrusty_oidc::jose::Algorithm::parse(g.value.trim()).ok_or_else(|| {
                error(
                    &g.name,
                    format!("{:?} is not one of RS256, ES256, EdDSA", g.value),
                )
            })?
        },
        console_origins: Vec::new(),
        hash_workers: parse_number(
            given(env, &S::ARGON2_WORKERS, flags)?,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            "a number of workers from 1 to 256",
            |v| (1..=256).contains(v),
        )?,
        hash_queue: number(
            env,
            &S::ARGON2_QUEUE,
            flags,
            "a number of waiting sign-ins from 0 to 100000",
            |v| *v <= 100_000,
        )?,
        rate_limits: {
            let rate = |setting: &Setting| {
                let g = value(env, setting, flags)?;
                opentrusty_auth::Rate::parse(&g.value).map_err(|e| error(&g.name, e))
            };
            opentrusty_auth::RateLimits {
                login: rate(&S::RATE_LIMIT_LOGIN)?,
                enroll: rate(&S::RATE_LIMIT_ENROLL)?,
                authorize: rate(&S::RATE_LIMIT_AUTHORIZE)?,
                token: rate(&S::RATE_LIMIT_TOKEN)?,
                ipv6_prefix: number(
                    env,
                    &S::RATE_LIMIT_IPV6_PREFIX,
                    flags,
                    "a prefix length from 32 to 128",
                    |v| (32..=128).contains(v),
                )?,
            }
        },
        lockout: opentrusty_core::lockout::LockoutPolicy {
            threshold: number(
                env,
                &S::LOCKOUT_THRESHOLD,
                flags,
                "a number of failures from 0 (off) to 100",
                |v| *v <= 100,
            )?,
            window_secs: seconds(&S::LOCKOUT_WINDOW, 86400)?,
            duration_secs: seconds(&S::LOCKOUT_DURATION, 86400)?,
        },
    })
}

/// The master key: configured, or (`serve all` and the `keys` command on SQLite) the
/// development key file beside the database.
pub fn secret(
    env: &dyn Env,
    mode: Mode,
    database: &DatabaseSettings,
    flags: &Flags,
) -> Result<SecretSource, ConfigError> {
    let inline = env.get(S::SECRET_KEY.var)?;
    let file = given(env, &S::SECRET_KEY_FILE, flags)?;
    match (inline, file) {
        (Some(_), Some(f)) => Err(error(
            &f.name,
            "conflicts with OPENTRUSTY_SECRET_KEY; set only one of them",
        )),
        // The key itself is never echoed, only what is wrong with it.
        (Some(key), None) => MasterKey::parse(&key)
            .map(SecretSource::Configured)
            .map_err(|e| error(S::SECRET_KEY.var, e.message)),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(&f.value)
                .map_err(|e| error(&f.name, format!("cannot read {:?}: {e}", f.value)))?;
            MasterKey::parse(&text)
                .map(SecretSource::Configured)
                .map_err(|e| error(&f.name, format!("the file's key {}", e.message)))
        }
        (None, None) => match (mode, database.sqlite_file()) {
            (Mode::All, Some(db_file)) => Ok(SecretSource::DevelopmentFile(development_key_path(
                &db_file,
            ))),
            (Mode::All, None) => Err(error(
                S::SECRET_KEY.var,
                "is required unless `serve all` runs on an SQLite file; generate one with `openssl rand -base64 32`",
            )),
            (m, _) => Err(error(
                S::SECRET_KEY.var,
                format!(
                    "is required for `serve {}`; generate one with `openssl rand -base64 32`",
                    m.as_str()
                ),
            )),
        },
    }
}

/// `opentrusty.db` → `opentrusty.db.secret-key`, in the same directory.
pub fn development_key_path(db_file: &Path) -> PathBuf {
    let mut name = db_file.file_name().unwrap_or_default().to_os_string();
    name.push(".secret-key");
    db_file.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn get(&self, var: &str) -> Result<Option<String>, ConfigError> {
            Ok(self
                .0
                .get(var)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string()))
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }

    fn no_flags() -> Flags {
        Flags::default()
    }

    #[test]
    fn issuer_must_be_https_or_loopback_http() {
        let ok = |v: &'static str| {
            let e = env(&[("OPENTRUSTY_ISSUER", v)]);
            serve(&e, Mode::All, db(&e), &no_flags()).map(|s| s.auth)
        };
        let s = ok("https://auth.example.com/").unwrap();
        assert_eq!(s.issuer, "https://auth.example.com");
        assert!(s.cookie_secure);
        assert!(!ok("http://127.0.0.1:8080").unwrap().cookie_secure);
        for bad in [
            "http://auth.example.com",
            "auth.example.com",
            "https://a.example/?x=1",
            "https://a.example/#f",
        ] {
            assert_eq!(ok(bad).unwrap_err().name, "OPENTRUSTY_ISSUER", "{bad}");
        }
        let e = env(&[]);
        assert_eq!(
            serve(&e, Mode::All, db(&e), &no_flags())
                .unwrap()
                .auth
                .issuer,
            "http://localhost:8080"
        );
        let e = env(&[("OPENTRUSTY_COOKIE_DOMAIN", "bad domain")]);
        assert_eq!(
            serve(&e, Mode::All, db(&e), &no_flags()).unwrap_err().name,
            "OPENTRUSTY_COOKIE_DOMAIN"
        );
        let e = env(&[("OPENTRUSTY_AUTH_CODE_TTL", "601")]);
        assert_eq!(
            serve(&e, Mode::All, db(&e), &no_flags()).unwrap_err().name,
            "OPENTRUSTY_AUTH_CODE_TTL"
        );
    }

    fn db(e: &MapEnv) -> DatabaseSettings {
        database(e, &no_flags()).unwrap()
    }

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn defaults_need_no_configuration_for_serve_all() {
        let e = env(&[]);
        let s = serve(&e, Mode::All, db(&e), &no_flags()).unwrap();
        assert_eq!(s.database.url, "sqlite://opentrusty.db");
        assert_eq!((s.auth_port, s.admin_port), (8080, 8081));
        assert_eq!(s.log_format, LogFormat::Text);
        // The table's values when unset are the libraries' own defaults.
        assert_eq!(s.hasher.params(), HashParams::default());
        assert_eq!(
            format!("{:?}", s.auth.rate_limits),
            format!("{:?}", opentrusty_auth::RateLimits::default())
        );
        match s.secret {
            SecretSource::DevelopmentFile(p) => {
                assert_eq!(p, PathBuf::from("opentrusty.db.secret-key"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_variable_or_flag() {
        let e = env(&[
            ("OPENTRUSTY_AUTH_PORT", "abc"),
            ("OPENTRUSTY_SECRET_KEY", KEY),
        ]);
        let err = serve(&e, Mode::Auth, db(&e), &no_flags()).unwrap_err();
        assert_eq!(err.name, "OPENTRUSTY_AUTH_PORT");
        assert!(
            err.problem.contains("\"abc\" is not a port number"),
            "{err}"
        );

        let flags = Flags::given(&[(&S::AUTH_PORT, "99999")]);
        let err = serve(&e, Mode::Auth, db(&e), &flags).unwrap_err();
        assert_eq!(err.name, "--auth-port");

        let e = env(&[("OPENTRUSTY_DATABASE_URL", "mysql://x")]);
        let err = database(&e, &no_flags()).unwrap_err();
        assert_eq!(err.name, "OPENTRUSTY_DATABASE_URL");

        for bad in ["0", "3601", "1.5", "soon"] {
            let e = env(&[("OPENTRUSTY_DB_STATEMENT_TIMEOUT", bad)]);
            let args = no_flags();
            let err = database(&e, &args).unwrap_err();
            assert_eq!(err.name, "OPENTRUSTY_DB_STATEMENT_TIMEOUT", "{bad}");
        }
        let e = env(&[("OPENTRUSTY_DB_STATEMENT_TIMEOUT", "2")]);
        assert_eq!(
            db(&e).connect.statement_deadline,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            db(&env(&[])).connect.statement_deadline,
            opentrusty_store::STATEMENT_DEADLINE
        );

        let e = env(&[("OPENTRUSTY_MODE", "both")]);
        assert_eq!(mode(&e, None).unwrap_err().name, "OPENTRUSTY_MODE");
        assert_eq!(
            mode(&env(&[("OPENTRUSTY_MODE", "admin")]), None).unwrap(),
            Mode::Admin
        );
        assert_eq!(mode(&e, Some(ModeArg::Auth)).unwrap(), Mode::Auth);
        assert_eq!(mode(&env(&[]), None).unwrap_err().name, "OPENTRUSTY_MODE");
    }

    #[test]
    fn planes_require_a_secret_key_and_never_echo_it() {
        let e = env(&[]);
        for m in [Mode::Auth, Mode::Admin] {
            let err = serve(&e, m, db(&e), &no_flags()).unwrap_err();
            assert_eq!(err.name, "OPENTRUSTY_SECRET_KEY");
            assert!(err.problem.contains("required"));
        }
        let e = env(&[("OPENTRUSTY_SECRET_KEY", "tooshortsecretvalue")]);
        let err = serve(&e, Mode::Auth, db(&e), &no_flags()).unwrap_err();
        assert_eq!(err.name, "OPENTRUSTY_SECRET_KEY");
        assert!(!err.to_string().contains("tooshortsecretvalue"));
        let e = env(&[
            ("OPENTRUSTY_SECRET_KEY", KEY),
            ("OPENTRUSTY_DATABASE_URL", "postgres://u@localhost/db"),
        ]);
        assert!(matches!(
            serve(&e, Mode::Admin, db(&e), &no_flags()).unwrap().secret,
            SecretSource::Configured(_)
        ));
        let e = env(&[("OPENTRUSTY_DATABASE_URL", "postgres://u@localhost/db")]);
        assert_eq!(
            serve(&e, Mode::All, db(&e), &no_flags()).unwrap_err().name,
            "OPENTRUSTY_SECRET_KEY"
        );
    }

    #[test]
    fn bootstrap_password_follows_the_policy() {
        let e = env(&[
            ("OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL", "root@example.com"),
            ("OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD", "short"),
        ]);
        let err = bootstrap(&e, &no_flags()).unwrap_err();
        assert_eq!(err.name, "OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD");
        assert!(!err.to_string().contains("short\""));
        let e = env(&[("OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL", "not-an-email")]);
        assert_eq!(
            bootstrap(&e, &no_flags()).unwrap_err().name,
            "OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL"
        );
        let flag = bootstrap(
            &env(&[]),
            &Flags::given(&[(&S::BOOTSTRAP_ADMIN_EMAIL, "a@example.com")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(flag.email.as_str(), "a@example.com");
        assert!(bootstrap(&env(&[]), &no_flags()).unwrap().is_none());
    }

    #[test]
    fn hashing_parameters_are_validated() {
        let e = env(&[
            ("OPENTRUSTY_ARGON2_MEMORY_KIB", "65536"),
            ("OPENTRUSTY_ARGON2_ITERATIONS", "3"),
        ]);
        let none = no_flags();
        let h = hashing(&e, &none).unwrap();
        assert_eq!((h.params().memory_kib, h.params().iterations), (65536, 3));
        let e = env(&[("OPENTRUSTY_ARGON2_MEMORY_KIB", "12")]);
        assert_eq!(
            hashing(&e, &none).unwrap_err().name,
            "OPENTRUSTY_ARGON2_MEMORY_KIB"
        );
        let e = env(&[("OPENTRUSTY_ARGON2_PARALLELISM", "0")]);
        assert_eq!(
            hashing(&e, &none).unwrap_err().name,
            "OPENTRUSTY_ARGON2_PARALLELISM"
        );
    }

    #[test]
    fn one_forwarding_header_is_chosen_and_ipv6_clients_are_counted_by_prefix() {
        use opentrusty_web::proxy::ForwardedHeader;
        let settings = |pairs: &[(&'static str, &'static str)]| {
            let e = env(pairs);
            serve(&e, Mode::All, db(&e), &no_flags())
        };
        let s = settings(&[]).unwrap();
        assert_eq!(
            s.ops.trusted_proxies.header(),
            ForwardedHeader::XForwardedFor
        );
        assert_eq!(s.auth.rate_limits.ipv6_prefix, 64);
        let s = settings(&[
            ("OPENTRUSTY_FORWARDED_HEADER", "forwarded"),
            ("OPENTRUSTY_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("OPENTRUSTY_RATE_LIMIT_IPV6_PREFIX", "56"),
        ])
        .unwrap();
        assert_eq!(s.ops.trusted_proxies.header(), ForwardedHeader::Forwarded);
        assert_eq!(s.ops.trusted_proxies.ranges().len(), 1);
        assert_eq!(s.auth.rate_limits.ipv6_prefix, 56);
        for bad in ["x-real-ip", "both", "forwarded,x-forwarded-for"] {
            let err = serve(
                &MapEnv([("OPENTRUSTY_FORWARDED_HEADER", bad)].into_iter().collect()),
                Mode::All,
                db(&env(&[])),
                &no_flags(),
            )
            .unwrap_err();
            assert_eq!(err.name, "OPENTRUSTY_FORWARDED_HEADER", "{bad}");
            assert!(
                err.problem.contains("x-forwarded-for or forwarded"),
                "{err}"
            );
        }
        let flags = Flags::given(&[(&S::FORWARDED_HEADER, "X-Real-IP")]);
        let e = env(&[]);
        assert_eq!(
            serve(&e, Mode::All, db(&e), &flags).unwrap_err().name,
            "--forwarded-header"
        );
        for bad in ["31", "129", "64.5", "-1"] {
            let err = serve(
                &MapEnv(
                    [("OPENTRUSTY_RATE_LIMIT_IPV6_PREFIX", bad)]
                        .into_iter()
                        .collect(),
                ),
                Mode::All,
                db(&env(&[])),
                &no_flags(),
            )
            .unwrap_err();
            assert_eq!(err.name, "OPENTRUSTY_RATE_LIMIT_IPV6_PREFIX", "{bad}");
        }
    }

    #[test]
    fn connection_limits_fit_the_open_files_limit() {
        let ops = no_flags();
        let limits = |pairs: &[(&'static str, &'static str)], open_files| {
            connection_limits(&env(pairs), &ops, open_files, 10)
        };
        let d = limits(&[], Some(65_536)).unwrap();
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.keep_alive_timeout, Duration::from_secs(75));
        assert_eq!(d.max_connections, 10_000);
        assert_eq!(limits(&[], None).unwrap().max_connections, 10_000);
        // Debian's default soft limit: what is left after the pool and the reserve.
        assert_eq!(limits(&[], Some(1024)).unwrap().max_connections, 1024 - 138);
        let err = limits(&[], Some(100)).unwrap_err();
        assert_eq!(err.name, "OPENTRUSTY_MAX_CONNECTIONS");
        assert!(err.problem.contains("LimitNOFILE"), "{err}");
        let set = limits(
            &[
                ("OPENTRUSTY_MAX_CONNECTIONS", "500"),
                ("OPENTRUSTY_HEADER_READ_TIMEOUT", "3"),
                ("OPENTRUSTY_KEEP_ALIVE_TIMEOUT", "5"),
            ],
            Some(1024),
        )
        .unwrap();
        assert_eq!(set.max_connections, 500);
        assert_eq!(set.header_read_timeout, Duration::from_secs(3));
        assert_eq!(set.keep_alive_timeout, Duration::from_secs(5));
        let err = limits(&[("OPENTRUSTY_MAX_CONNECTIONS", "2000")], Some(1024)).unwrap_err();
        assert_eq!(err.name, "OPENTRUSTY_MAX_CONNECTIONS");
        assert!(err.problem.contains("set at most 886"), "{err}");
        for (var, bad) in [
            ("OPENTRUSTY_MAX_CONNECTIONS", "0"),
            ("OPENTRUSTY_MAX_CONNECTIONS", "many"),
            ("OPENTRUSTY_HEADER_READ_TIMEOUT", "0"),
            ("OPENTRUSTY_HEADER_READ_TIMEOUT", "301"),
            ("OPENTRUSTY_KEEP_ALIVE_TIMEOUT", "1.5"),
        ] {
            assert_eq!(limits(&[(var, bad)], None).unwrap_err().name, var, "{bad}");
        }
        let flags = Flags::given(&[(&S::HEADER_READ_TIMEOUT, "x")]);
        assert_eq!(
            connection_limits(&env(&[]), &flags, None, 10)
                .unwrap_err()
                .name,
            "--header-read-timeout"
        );
    }

    #[test]
    fn development_key_sits_beside_the_database() {
        assert_eq!(
            development_key_path(Path::new("/var/lib/ot/data.db")),
            PathBuf::from("/var/lib/ot/data.db.secret-key")
        );
    }
}
