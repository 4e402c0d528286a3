//! Every setting of the binary, written once: its `OPENTRUSTY_*` variable, its flag, what happens
//! when it is unset, which commands use it, its help line and its documentation. The command
//! line's flags and their help (`cli`), the values `config` resolves, the settings table of
//! `docs/configuration.md` and the warning about unknown `OPENTRUSTY_*` variables all come from
//! here.

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// The command-line flag, when the setting has one (secrets have none: command lines are
    /// visible to every user of the host).
    pub flag: Option<Flag>,
    pub when_unset: WhenUnset,
    /// The commands that read it, as the documentation names them.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "read by the documentation's test")
    )]
    pub used_by: &'static str,
    /// The flag's help line.
    pub help: &'static str,
    /// What `docs/configuration.md` says beyond the help line (Markdown).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "read by the documentation's test")
    )]
    pub notes: &'static str,
}

/// A setting's flag: `--{long} <{value}>`.
#[derive(Debug)]
pub struct Flag {
    pub long: &'static str,
    pub value: &'static str,
}

/// What a setting is when neither its flag nor its variable is given.
#[derive(Debug)]
pub enum WhenUnset {
    /// This value, read exactly as if it had been given.
    Value(&'static str),
    /// Worked out at start from other settings or the machine, as the text says.
    Computed(&'static str),
    /// Nothing: the feature stays off, or the value is required where the text says.
    Nothing(&'static str),
}

impl Setting {
    /// The help line `--help` shows: the text, the variable and what applies when unset.
    pub fn help_line(&self) -> String {
        let unset = match self.when_unset {
            WhenUnset::Value(v) | WhenUnset::Computed(v) | WhenUnset::Nothing(v) => v,
        };
        if unset == "—" {
            format!("{} [env: {}]", self.help, self.var)
        } else {
            format!("{} [env: {}] [default: {unset}]", self.help, self.var)
        }
    }

    /// How the flag is written on a command line, or the variable when there is no flag.
    pub fn flag_name(&self) -> String {
        match &self.flag {
            Some(f) => format!("--{}", f.long),
            None => self.var.to_owned(),
        }
    }
}

/// Variables the test suite reads (never the binary); not reported as unknown.
pub const TEST_SUITE_PREFIX: &str = "OPENTRUSTY_TEST_";

/// The `OPENTRUSTY_*` names among `names` that are no setting of this release, each with the
/// setting it most likely meant (one or two letters off), for a warning at start: a misspelt
/// variable would otherwise be ignored in silence.
pub fn unknown_variables<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Option<&'static str>)> {
    let mut unknown: Vec<(String, Option<&'static str>)> = names
        .into_iter()
        .filter(|n| n.starts_with("OPENTRUSTY_") && !n.starts_with(TEST_SUITE_PREFIX))
        .filter(|n| ALL.iter().all(|s| s.var != *n))
        .map(|n| {
            let near = ALL
                .iter()
                .map(|s| (edit_distance(n, s.var), s.var))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, v)| v);
            (n.to_owned(), near)
        })
        .collect();
    unknown.sort();
    unknown
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The settings table of `docs/configuration.md`, as Markdown.
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut out =
        String::from("| Variable | Flag | Default | Used by | Notes |\n|---|---|---|---|---|\n");
    for s in ALL {
        let flag = match (&s.flag, s.var) {
            (Some(f), _) => format!("`--{}`", f.long),
            (None, "OPENTRUSTY_MODE") => "positional `auth\\|admin\\|all`".to_owned(),
            (None, _) => "—".to_owned(),
        };
        let unset = match s.when_unset {
            WhenUnset::Value(v) => format!("`{v}`"),
            WhenUnset::Computed(v) | WhenUnset::Nothing(v) => v.to_owned(),
        };
        let notes = if s.notes.is_empty() { s.help } else { s.notes };
        out.push_str(&format!(
            "| `{}` | {flag} | {unset} | {} | {notes} |\n",
            s.var, s.used_by
        ));
    }
    out
}

pub static MODE: Setting = Setting {
    var: "OPENTRUSTY_MODE",
    flag: None,
    when_unset: WhenUnset::Nothing("—"),
    used_by: "`serve`",
    help: "Which plane to serve",
    notes: "`auth`, `admin` or `all`: the positional argument of `serve`, which wins over the \
        variable.",
};

pub static DATABASE_URL: Setting = Setting {
    var: "OPENTRUSTY_DATABASE_URL",
    flag: Some(Flag {
        long: "database-url",
        value: "URL",
    }),
    when_unset: WhenUnset::Value("sqlite://opentrusty.db"),
    used_by: "all",
    help: "Database URL: postgres://user@host/db or sqlite://path/to/file.db",
    notes: "`postgres://…` / `postgresql://…` or `sqlite://path` (relative to the working \
        directory; `sqlite:///abs/path` for absolute paths). An SQLite file is created if \
        missing, with mode 0600. PostgreSQL URLs take libpq's parameters; without \
        `sslmode` the connection uses TLS whenever the server offers it (`prefer`): set \
        `sslmode=verify-full` (with `sslrootcert=`) for a database across a network, and \
        `sslmode=disable` or a Unix socket \
        (`postgres://opentrusty@localhost/opentrusty?host=/var/run/postgresql`) for one \
        on the same host, where TLS only costs CPU.",
};

pub static DB_MAX_CONNECTIONS: Setting = Setting {
    var: "OPENTRUSTY_DB_MAX_CONNECTIONS",
    flag: Some(Flag {
        long: "db-max-connections",
        value: "N",
    }),
    when_unset: WhenUnset::Value("10"),
    used_by: "all",
    help: "Most database connections this process opens",
    notes: "1–1000; each process sizes its own pool.",
};

pub static DB_STATEMENT_TIMEOUT: Setting = Setting {
    var: "OPENTRUSTY_DB_STATEMENT_TIMEOUT",
    flag: Some(Flag {
        long: "db-statement-timeout",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("60"),
    used_by: "all",
    help: "Seconds a database statement may go unanswered before its request fails as \
        unavailable",
    notes: "1–3600 seconds a database statement may go unanswered before its request fails \
        with 503 (a network path to the database that went silent, which TCP alone would \
        notice only after about 15 minutes). Keep it above the longest legitimate \
        statement: deleting a tenant with a million tokens takes seconds. Group-committed \
        token writes have their own 10 s bound.",
};

pub static AUTH_PORT: Setting = Setting {
    var: "OPENTRUSTY_AUTH_PORT",
    flag: Some(Flag {
        long: "auth-port",
        value: "PORT",
    }),
    when_unset: WhenUnset::Value("8080"),
    used_by: "`serve auth`, `serve all`",
    help: "Port of the auth plane (and of both planes in `serve all`)",
    notes: "0–65535 (0 picks a free port).",
};

pub static ADMIN_PORT: Setting = Setting {
    var: "OPENTRUSTY_ADMIN_PORT",
    flag: Some(Flag {
        long: "admin-port",
        value: "PORT",
    }),
    when_unset: WhenUnset::Value("8081"),
    used_by: "`serve admin`",
    help: "Port of the admin plane",
    notes: "0–65535.",
};

pub static BIND_ADDRESS: Setting = Setting {
    var: "OPENTRUSTY_BIND_ADDRESS",
    flag: Some(Flag {
        long: "bind-address",
        value: "IP",
    }),
    when_unset: WhenUnset::Value("0.0.0.0"),
    used_by: "`serve`",
    help: "Address to listen on",
    notes: "An IPv4 or IPv6 address.",
};

pub static SECRET_KEY: Setting = Setting {
    var: "OPENTRUSTY_SECRET_KEY",
    flag: None,
    when_unset: WhenUnset::Nothing("—"),
    used_by: "`serve`",
    help: "",
    notes: "At least 32 bytes, hex or base64 (standard or URL-safe, padded or not); `openssl \
        rand -base64 32` makes one. Required for `serve auth` and `serve admin`. Every \
        process of an installation needs the same key.",
};

pub static SECRET_KEY_FILE: Setting = Setting {
    var: "OPENTRUSTY_SECRET_KEY_FILE",
    flag: Some(Flag {
        long: "secret-key-file",
        value: "PATH",
    }),
    when_unset: WhenUnset::Nothing("—"),
    used_by: "`serve`",
    help: "File holding the secret key (instead of OPENTRUSTY_SECRET_KEY)",
    notes: "A file holding the key instead (for secret mounts). Setting both is an error.",
};

pub static SHUTDOWN_TIMEOUT: Setting = Setting {
    var: "OPENTRUSTY_SHUTDOWN_TIMEOUT",
    flag: Some(Flag {
        long: "shutdown-timeout",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("30"),
    used_by: "`serve`",
    help: "Longest wait for in-flight requests at shutdown, in seconds",
    notes: "Seconds, 0–3600.",
};

pub static LOG_FORMAT: Setting = Setting {
    var: "OPENTRUSTY_LOG_FORMAT",
    flag: Some(Flag {
        long: "log-format",
        value: "FORMAT",
    }),
    when_unset: WhenUnset::Computed("json for auth and admin, text for all"),
    used_by: "`serve`",
    help: "Log format: json or text",
    notes: "JSON lines on stdout; text goes to stderr.",
};

pub static LOG_LEVEL: Setting = Setting {
    var: "OPENTRUSTY_LOG_LEVEL",
    flag: Some(Flag {
        long: "log-level",
        value: "FILTER",
    }),
    when_unset: WhenUnset::Value("info"),
    used_by: "`serve`",
    help: "Log filter, e.g. info or opentrusty=debug",
    notes: "A tracing filter, e.g. `debug` or `info,opentrusty_store=debug`.",
};

pub static ARGON2_MEMORY_KIB: Setting = Setting {
    var: "OPENTRUSTY_ARGON2_MEMORY_KIB",
    flag: Some(Flag {
        long: "argon2-memory-kib",
        value: "KIB",
    }),
    when_unset: WhenUnset::Value("19456"),
    used_by: "`serve`, `bootstrap`",
    help: "Argon2id memory in KiB",
    notes: "8192–4194304.",
};

pub static ARGON2_ITERATIONS: Setting = Setting {
    var: "OPENTRUSTY_ARGON2_ITERATIONS",
    flag: Some(Flag {
        long: "argon2-iterations",
        value: "N",
    }),
    when_unset: WhenUnset::Value("2"),
    used_by: "`serve`, `bootstrap`",
    help: "Argon2id passes",
    notes: "1–64.",
};

pub static ARGON2_PARALLELISM: Setting = Setting {
    var: "OPENTRUSTY_ARGON2_PARALLELISM",
    flag: Some(Flag {
        long: "argon2-parallelism",
        value: "N",
    }),
    when_unset: WhenUnset::Value("1"),
    used_by: "`serve`, `bootstrap`",
    help: "Argon2id lanes",
    notes: "1–16.",
};

pub static BOOTSTRAP_ADMIN_EMAIL: Setting = Setting {
    var: "OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL",
    flag: Some(Flag {
        long: "email",
        value: "EMAIL",
    }),
    when_unset: WhenUnset::Nothing("—"),
    used_by: "`bootstrap`, `serve`",
    help: "Email of the first platform administrator; `serve` creates it at start when set, \
        as `bootstrap` does. The password is read only from \
        OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD, never from a flag.",
    notes: "",
};

pub static BOOTSTRAP_ADMIN_PASSWORD: Setting = Setting {
    var: "OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD",
    flag: None,
    when_unset: WhenUnset::Computed("generated and printed once"),
    used_by: "`bootstrap`, `serve`",
    help: "",
    notes: "Never a flag.",
};

pub static CONSOLE_ORIGINS: Setting = Setting {
    var: "OPENTRUSTY_CONSOLE_ORIGINS",
    flag: Some(Flag {
        long: "console-origins",
        value: "ORIGINS",
    }),
    when_unset: WhenUnset::Nothing("none"),
    used_by: "`serve admin`, `serve all`",
    help: "Comma-separated origins of the admin console (https://console.example.com): the \
        only origins whose cookie-authenticated requests and CORS calls are accepted",
    notes: "Comma-separated origins of the admin console (`https://console.example.com`, http \
        only on a loopback host, no path). Cookie-authenticated admin requests from any \
        other `Origin` are refused, and CORS admits exactly these (with credentials). See \
        [admin-api.md](admin-api.md).",
};

pub static ENROLLMENT_TTL: Setting = Setting {
    var: "OPENTRUSTY_ENROLLMENT_TTL",
    flag: Some(Flag {
        long: "enrollment-ttl",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("259200"),
    used_by: "`serve admin`, `serve all`",
    help: "Seconds an enrollment or password-reset link works",
    notes: "Seconds an enrollment or password-reset link works (72 hours unless set), \
        300–2592000.",
};

pub static LOCKOUT_THRESHOLD: Setting = Setting {
    var: "OPENTRUSTY_LOCKOUT_THRESHOLD",
    flag: Some(Flag {
        long: "lockout-threshold",
        value: "N",
    }),
    when_unset: WhenUnset::Value("5"),
    used_by: "`serve auth`, `serve all`",
    help: "Failed passwords within the window that lock an account; 0 turns lockout off",
    notes: "Failed passwords within the window that lock an account (0–100; 0 turns lockout \
        off). Counted in the user's row, so it holds across processes. A locked account \
        answers exactly like a wrong password; a sign-in, the lock's expiry or the admin \
        plane's unlock restart the count. Failures and locks are audited (`login.failed`, \
        `user.locked`).",
};

pub static LOCKOUT_WINDOW: Setting = Setting {
    var: "OPENTRUSTY_LOCKOUT_WINDOW",
    flag: Some(Flag {
        long: "lockout-window",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("900"),
    used_by: "`serve auth`, `serve all`",
    help: "Seconds in which failures add up",
    notes: "Seconds in which failures add up, 1–86400.",
};

pub static LOCKOUT_DURATION: Setting = Setting {
    var: "OPENTRUSTY_LOCKOUT_DURATION",
    flag: Some(Flag {
        long: "lockout-duration",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("900"),
    used_by: "`serve auth`, `serve all`",
    help: "Seconds an account stays locked",
    notes: "Seconds an account stays locked, 1–86400.",
};

pub static ARGON2_WORKERS: Setting = Setting {
    var: "OPENTRUSTY_ARGON2_WORKERS",
    flag: Some(Flag {
        long: "argon2-workers",
        value: "N",
    }),
    when_unset: WhenUnset::Computed("the number of CPUs"),
    used_by: "`serve auth`, `serve all`",
    help: "Password hashes computed at once",
    notes: "Password hashes computed at once (each holds `OPENTRUSTY_ARGON2_MEMORY_KIB`), \
        1–256.",
};

pub static ARGON2_QUEUE: Setting = Setting {
    var: "OPENTRUSTY_ARGON2_QUEUE",
    flag: Some(Flag {
        long: "argon2-queue",
        value: "N",
    }),
    when_unset: WhenUnset::Value("64"),
    used_by: "`serve auth`, `serve all`",
    help: "Sign-ins that may wait for a hashing worker; more get 503 at once",
    notes: "Sign-ins (and enrollments) that may wait for a hashing worker; beyond it they get \
        `503` with `Retry-After` at once, so memory stays bounded under a login flood. \
        Unknown emails are hashed too (against a dummy hash), so they cost the same time.",
};

pub static RATE_LIMIT_LOGIN: Setting = Setting {
    var: "OPENTRUSTY_RATE_LIMIT_LOGIN",
    flag: Some(Flag {
        long: "rate-limit-login",
        value: "RATE",
    }),
    when_unset: WhenUnset::Value("10/60"),
    used_by: "`serve auth`, `serve all`",
    help: "Sign-in attempts per client address, N/SECONDS or off",
    notes: "Requests per client address as `N/SECONDS` (burst N), or `off`: `POST /login` and \
        the console's `POST /api/v1/auth/login` share it. Over it: `429` with \
        `Retry-After` (a page for pages, JSON for APIs). The client address follows the \
        trusted-proxy rules. Buckets live in each process's memory.",
};

pub static RATE_LIMIT_ENROLL: Setting = Setting {
    var: "OPENTRUSTY_RATE_LIMIT_ENROLL",
    flag: Some(Flag {
        long: "rate-limit-enroll",
        value: "RATE",
    }),
    when_unset: WhenUnset::Value("10/60"),
    used_by: "`serve auth`, `serve all`",
    help: "Enrollment page requests per client address",
    notes: "`GET`/`POST /enroll`.",
};

pub static RATE_LIMIT_AUTHORIZE: Setting = Setting {
    var: "OPENTRUSTY_RATE_LIMIT_AUTHORIZE",
    flag: Some(Flag {
        long: "rate-limit-authorize",
        value: "RATE",
    }),
    when_unset: WhenUnset::Value("60/60"),
    used_by: "`serve auth`, `serve all`",
    help: "Authorization requests per client address",
    notes: "`/oauth2/authorize`.",
};

pub static RATE_LIMIT_TOKEN: Setting = Setting {
    var: "OPENTRUSTY_RATE_LIMIT_TOKEN",
    flag: Some(Flag {
        long: "rate-limit-token",
        value: "RATE",
    }),
    when_unset: WhenUnset::Value("1200/60"),
    used_by: "`serve auth`, `serve all`",
    help: "Token, introspection and revocation requests per client address",
    notes: "`/oauth2/token`, `/oauth2/introspect`, `/oauth2/revoke`. Raise it (or `off`) for \
        a busy service calling from one address, and for benchmarks.",
};

pub static RATE_LIMIT_IPV6_PREFIX: Setting = Setting {
    var: "OPENTRUSTY_RATE_LIMIT_IPV6_PREFIX",
    flag: Some(Flag {
        long: "rate-limit-ipv6-prefix",
        value: "BITS",
    }),
    when_unset: WhenUnset::Value("64"),
    used_by: "`serve auth`, `serve all`",
    help: "Prefix length by which IPv6 clients share a rate-limit budget, 32 to 128",
    notes: "Prefix length, 32–128, by which IPv6 clients share a budget: a subscriber usually \
        holds a whole /64 and could otherwise take a fresh budget per address. IPv4 \
        clients (also written IPv4-mapped, `::ffff:a.b.c.d`) are counted per address. \
        Each kind of limit tracks at most 50,000 clients per process; a new client when \
        that is full makes room by forgetting the fullest buckets (those that refilled \
        first, least recently used among equals), never by going untracked, so a flood of \
        new addresses cannot lift anyone's limit.",
};

pub static AUTH_DOMAIN: Setting = Setting {
    var: "OPENTRUSTY_AUTH_DOMAIN",
    flag: Some(Flag {
        long: "auth-domain",
        value: "HOST",
    }),
    when_unset: WhenUnset::Nothing("—"),
    used_by: "`serve`",
    help: "Host name of the auth plane (auth.example.com): with it, requests are routed by \
        `Host`",
    notes: "Host name of the auth plane. With a plane domain set, requests are routed by \
        `Host`: `serve all` sends the auth domain to the auth routes and the admin domain \
        to the admin routes; `serve auth` and `serve admin` answer `421 Misdirected \
        Request` to the other plane's domain and, when their own is set, to any other \
        host. `/health` and `/ready` answer on every host. Without domains, routing is by \
        port.",
};

pub static ADMIN_DOMAIN: Setting = Setting {
    var: "OPENTRUSTY_ADMIN_DOMAIN",
    flag: Some(Flag {
        long: "admin-domain",
        value: "HOST",
    }),
    when_unset: WhenUnset::Nothing("—"),
    used_by: "`serve`",
    help: "Host name of the admin plane (api.example.com)",
    notes: "Host name of the admin plane; must differ from the auth domain.",
};

pub static TRUSTED_PROXIES: Setting = Setting {
    var: "OPENTRUSTY_TRUSTED_PROXIES",
    flag: Some(Flag {
        long: "trusted-proxies",
        value: "CIDRS",
    }),
    when_unset: WhenUnset::Nothing("none"),
    used_by: "`serve`",
    help: "Comma-separated addresses or CIDR ranges of reverse proxies whose forwarded \
        headers are believed",
    notes: "Comma-separated addresses or CIDR ranges (`127.0.0.1/32,10.0.0.0/8`). Only \
        requests from these peers have the forwarding header (below) and `X-Request-Id` \
        believed; the client is the nearest address in that header's chain that is not \
        itself a trusted proxy (a hop that cannot be read ends the chain: the client is \
        then the last trusted proxy read). From any other peer the socket address is the \
        client and a fresh request id is made.",
};

pub static FORWARDED_HEADER: Setting = Setting {
    var: "OPENTRUSTY_FORWARDED_HEADER",
    flag: Some(Flag {
        long: "forwarded-header",
        value: "HEADER",
    }),
    when_unset: WhenUnset::Value("x-forwarded-for"),
    used_by: "`serve`",
    help: "The one forwarding header the trusted proxies set and the planes read: \
        x-forwarded-for (with X-Forwarded-Proto) or forwarded (RFC 7239); the other is \
        ignored",
    notes: "The one header the trusted proxies set and the planes read: `x-forwarded-for` \
        (the scheme from `X-Forwarded-Proto`; what the shipped nginx and Caddy files set) \
        or `forwarded` (RFC 7239 `for=` and `proto=`). The other header is never read, \
        whoever sends it: a proxy passes on the headers it does not set, so a client \
        could write it. Choose the one your proxy overwrites or appends to, and make the \
        proxy clear the other ([deployment.md](deployment.md#6-the-reverse-proxy)).",
};

pub static HEADER_READ_TIMEOUT: Setting = Setting {
    var: "OPENTRUSTY_HEADER_READ_TIMEOUT",
    flag: Some(Flag {
        long: "header-read-timeout",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("10"),
    used_by: "`serve`",
    help: "Seconds a client has to send a request's head, and then its body",
    notes: "Seconds, 1–300, a client has to send a request's head (from the connection's \
        start, or from the first byte of a later request), and then its body. A \
        connection that misses it is closed without an answer; a body that misses it \
        fails the request.",
};

pub static KEEP_ALIVE_TIMEOUT: Setting = Setting {
    var: "OPENTRUSTY_KEEP_ALIVE_TIMEOUT",
    flag: Some(Flag {
        long: "keep-alive-timeout",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("75"),
    used_by: "`serve`",
    help: "Seconds a keep-alive connection may wait for its next request",
    notes: "Seconds, 1–3600, a keep-alive connection may wait for its next request before it \
        is closed. Keep it longer than the proxy's idle timeout for its upstream \
        connections (nginx `keepalive_timeout` in the `upstream` block, 60 s by default), \
        so that the proxy, not the plane, closes idle connections and never sends a \
        request on one the plane is closing.",
};

pub static MAX_CONNECTIONS: Setting = Setting {
    var: "OPENTRUSTY_MAX_CONNECTIONS",
    flag: Some(Flag {
        long: "max-connections",
        value: "N",
    }),
    when_unset: WhenUnset::Computed("10000, or fewer to fit the open-files limit"),
    used_by: "`serve`",
    help: "Connections open at once on the plane's listener",
    notes: "Connections open at once on the plane's listener (the metrics listener holds at \
        most 16). The default is 10,000, lowered to what the process's open-files limit \
        (`RLIMIT_NOFILE`, `LimitNOFILE=` in the systemd units) leaves after 128 \
        descriptors plus the database pool; a value above that is refused at start. At \
        the cap nothing more is accepted: newcomers wait in the kernel's backlog (1,024) \
        and room is made at once by closing idle keep-alive connections, then the request \
        heads that have been arriving longest (for more than an eighth of the header-read \
        timeout, at most a second).",
};

pub static METRICS_ADDR: Setting = Setting {
    var: "OPENTRUSTY_METRICS_ADDR",
    flag: Some(Flag {
        long: "metrics-addr",
        value: "ADDR",
    }),
    when_unset: WhenUnset::Nothing("off"),
    used_by: "`serve`",
    help: "Address of the Prometheus metrics listener, e.g. 127.0.0.1:9100",
    notes: "Address of a separate listener serving Prometheus text at `/metrics` \
        (`127.0.0.1:9100`). Refused on the plane's own port.",
};

pub static JANITOR_INTERVAL: Setting = Setting {
    var: "OPENTRUSTY_JANITOR_INTERVAL",
    flag: Some(Flag {
        long: "janitor-interval",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("300"),
    used_by: "`serve auth`, `serve all`",
    help: "Seconds between janitor runs in an auth process; 0 turns it off",
    notes: "Seconds between janitor runs (0 turns it off); see `opentrusty cleanup`.",
};

pub static ACCESS_TOKEN_ALG: Setting = Setting {
    var: "OPENTRUSTY_ACCESS_TOKEN_ALG",
    flag: Some(Flag {
        long: "access-token-alg",
        value: "ALG",
    }),
    when_unset: WhenUnset::Value("RS256"),
    used_by: "`serve auth`, `serve all`",
    help: "Algorithm of JWT access tokens: RS256, ES256 or EdDSA",
    notes: "Algorithm of JWT access tokens: `RS256`, `ES256` or `EdDSA`. Every process makes \
        sure a key of it exists at start; resource servers find it in the JWKS by `kid`. \
        ES256 and EdDSA sign many times faster than RS256 (see benchmarks.md); choose \
        them when every resource server accepts them. ID tokens follow each client's \
        `id_token_signed_response_alg`.",
};

pub static ISSUER: Setting = Setting {
    var: "OPENTRUSTY_ISSUER",
    flag: Some(Flag {
        long: "issuer",
        value: "URL",
    }),
    when_unset: WhenUnset::Computed("http://localhost with the auth port"),
    used_by: "`serve`",
    help: "Issuer URL (https, or http on a loopback host)",
    notes: "Absolute URL without query or fragment; `https`, or `http` only for a loopback \
        host. Every endpoint URL in discovery is built from it. The admin plane reads it \
        too, as the base of enrollment links.",
};

pub static COOKIE_DOMAIN: Setting = Setting {
    var: "OPENTRUSTY_COOKIE_DOMAIN",
    flag: Some(Flag {
        long: "cookie-domain",
        value: "DOMAIN",
    }),
    when_unset: WhenUnset::Nothing("none (a host-only cookie)"),
    used_by: "`serve auth`, `serve all`",
    help: "Domain attribute of the session cookie, so the admin plane on a sibling host \
        receives it",
    notes: "Set it to a parent domain (`example.com`) so the admin plane on `api.example.com` \
        receives the session cookie issued on `auth.example.com`.",
};

pub static SESSION_IDLE_TIMEOUT: Setting = Setting {
    var: "OPENTRUSTY_SESSION_IDLE_TIMEOUT",
    flag: Some(Flag {
        long: "session-idle-timeout",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("1800"),
    used_by: "`serve`",
    help: "Seconds without activity after which a session ends",
    notes: "Seconds without a request after which a session ends, 1–2592000. The admin \
        plane refuses sessions idle longer too.",
};

pub static SESSION_LIFETIME: Setting = Setting {
    var: "OPENTRUSTY_SESSION_LIFETIME",
    flag: Some(Flag {
        long: "session-lifetime",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("86400"),
    used_by: "`serve auth`, `serve all`",
    help: "Seconds after sign-in after which a session ends",
    notes: "Seconds after login after which a session ends however active it is, \
        1–31536000.",
};

pub static AUTH_CODE_TTL: Setting = Setting {
    var: "OPENTRUSTY_AUTH_CODE_TTL",
    flag: Some(Flag {
        long: "auth-code-ttl",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("60"),
    used_by: "`serve auth`, `serve all`",
    help: "Seconds an authorization code stays redeemable",
    notes: "Seconds an authorization code stays redeemable (1–600).",
};

pub static REFRESH_GRACE_PERIOD: Setting = Setting {
    var: "OPENTRUSTY_REFRESH_GRACE_PERIOD",
    flag: Some(Flag {
        long: "refresh-grace-period",
        value: "SECONDS",
    }),
    when_unset: WhenUnset::Value("0"),
    used_by: "`serve auth`, `serve all`",
    help: "Seconds an already-rotated refresh token is still accepted",
    notes: "Seconds during which an already-rotated refresh token is still accepted (for \
        clients that refresh concurrently). 0 = any reuse revokes the family.",
};

/// Every setting, in the order `docs/configuration.md` lists them.
pub static ALL: &[&Setting] = &[
    &MODE,
    &DATABASE_URL,
    &DB_MAX_CONNECTIONS,
    &DB_STATEMENT_TIMEOUT,
    &AUTH_PORT,
    &ADMIN_PORT,
    &BIND_ADDRESS,
    &SECRET_KEY,
    &SECRET_KEY_FILE,
    &SHUTDOWN_TIMEOUT,
    &LOG_FORMAT,
    &LOG_LEVEL,
    &ARGON2_MEMORY_KIB,
    &ARGON2_ITERATIONS,
    &ARGON2_PARALLELISM,
    &BOOTSTRAP_ADMIN_EMAIL,
    &BOOTSTRAP_ADMIN_PASSWORD,
    &CONSOLE_ORIGINS,
    &ENROLLMENT_TTL,
    &LOCKOUT_THRESHOLD,
    &LOCKOUT_WINDOW,
    &LOCKOUT_DURATION,
    &ARGON2_WORKERS,
    &ARGON2_QUEUE,
    &RATE_LIMIT_LOGIN,
    &RATE_LIMIT_ENROLL,
    &RATE_LIMIT_AUTHORIZE,
    &RATE_LIMIT_TOKEN,
    &RATE_LIMIT_IPV6_PREFIX,
    &AUTH_DOMAIN,
    &ADMIN_DOMAIN,
    &TRUSTED_PROXIES,
    &FORWARDED_HEADER,
    &HEADER_READ_TIMEOUT,
    &KEEP_ALIVE_TIMEOUT,
    &MAX_CONNECTIONS,
    &METRICS_ADDR,
    &JANITOR_INTERVAL,
    &ACCESS_TOKEN_ALG,
    &ISSUER,
    &COOKIE_DOMAIN,
    &SESSION_IDLE_TIMEOUT,
    &SESSION_LIFETIME,
    &AUTH_CODE_TTL,
    &REFRESH_GRACE_PERIOD,
];

/// Flags of every command: where the database is and how it is used.
pub static DATABASE: &[&Setting] = &[&DATABASE_URL, &DB_MAX_CONNECTIONS, &DB_STATEMENT_TIMEOUT];

/// Flags of `serve`, `server` and `check`, in the order `--help` lists them.
pub static SERVE: &[&Setting] = &[
    &AUTH_PORT,
    &ADMIN_PORT,
    &BIND_ADDRESS,
    &SECRET_KEY_FILE,
    &SHUTDOWN_TIMEOUT,
    &LOG_FORMAT,
    &LOG_LEVEL,
    &ARGON2_MEMORY_KIB,
    &ARGON2_ITERATIONS,
    &ARGON2_PARALLELISM,
    &BOOTSTRAP_ADMIN_EMAIL,
    &ISSUER,
    &COOKIE_DOMAIN,
    &SESSION_IDLE_TIMEOUT,
    &SESSION_LIFETIME,
    &AUTH_CODE_TTL,
    &ACCESS_TOKEN_ALG,
    &REFRESH_GRACE_PERIOD,
    &LOCKOUT_THRESHOLD,
    &LOCKOUT_WINDOW,
    &LOCKOUT_DURATION,
    &ARGON2_WORKERS,
    &ARGON2_QUEUE,
    &RATE_LIMIT_LOGIN,
    &RATE_LIMIT_ENROLL,
    &RATE_LIMIT_AUTHORIZE,
    &RATE_LIMIT_TOKEN,
    &RATE_LIMIT_IPV6_PREFIX,
    &CONSOLE_ORIGINS,
    &ENROLLMENT_TTL,
    &AUTH_DOMAIN,
    &ADMIN_DOMAIN,
    &TRUSTED_PROXIES,
    &FORWARDED_HEADER,
    &METRICS_ADDR,
    &HEADER_READ_TIMEOUT,
    &KEEP_ALIVE_TIMEOUT,
    &MAX_CONNECTIONS,
    &JANITOR_INTERVAL,
];

/// Flags of `bootstrap`.
pub static BOOTSTRAP: &[&Setting] = &[
    &BOOTSTRAP_ADMIN_EMAIL,
    &ARGON2_MEMORY_KIB,
    &ARGON2_ITERATIONS,
    &ARGON2_PARALLELISM,
];

/// Flags of `keys rotate`.
pub static KEYS: &[&Setting] = &[&SECRET_KEY_FILE];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command, KeysCommand};

    const TABLE_START: &str =
        "<!-- settings table: generated from crates/server/src/settings.rs -->";
    const TABLE_END: &str = "<!-- end of the settings table -->";

    /// `docs/configuration.md` shows exactly this table. With `OPENTRUSTY_TEST_WRITE_DOCS=1` the
    /// test writes it there instead (then review the diff).
    #[test]
    fn the_documented_settings_are_this_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find(TABLE_START).expect("the table's start marker") + TABLE_START.len();
        let end = doc.find(TABLE_END).expect("the table's end marker");
        let table = format!("\n{}", markdown_table());
        if std::env::var("OPENTRUSTY_TEST_WRITE_DOCS").as_deref() == Ok("1") {
            std::fs::write(path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        assert_eq!(
            doc[start..end],
            table,
            "docs/configuration.md: run `OPENTRUSTY_TEST_WRITE_DOCS=1 cargo test -p opentrusty \
             --bin opentrusty documented` and review the change"
        );
    }

    #[test]
    fn each_variable_and_flag_is_one_setting_and_each_flag_belongs_to_a_command() {
        let vars: BTreeSet<&str> = ALL.iter().map(|s| s.var).collect();
        assert_eq!(vars.len(), ALL.len(), "a variable is listed twice");
        let flags: Vec<&str> = ALL
            .iter()
            .filter_map(|s| s.flag.as_ref())
            .map(|f| f.long)
            .collect();
        assert_eq!(
            flags.iter().collect::<BTreeSet<_>>().len(),
            flags.len(),
            "a flag is listed twice"
        );
        let grouped: BTreeSet<&str> = [DATABASE, SERVE, BOOTSTRAP, KEYS]
            .iter()
            .flat_map(|g| g.iter().map(|s| s.var))
            .collect();
        assert!(
            grouped.is_subset(&vars),
            "a command takes a setting missing from ALL"
        );
        for s in ALL {
            assert!(s.var.starts_with("OPENTRUSTY_") && !s.var.starts_with(TEST_SUITE_PREFIX));
            assert_eq!(
                s.flag.is_some(),
                grouped.contains(s.var),
                "{}: a flag no command takes, or a command taking a setting without a flag",
                s.var
            );
            assert!(
                !s.help.is_empty() || !s.notes.is_empty(),
                "{} is undocumented",
                s.var
            );
        }
    }

    /// Each command accepts the flags of its settings and hands their values to the resolution.
    #[test]
    fn each_command_reads_every_flag_of_its_settings() {
        let line = |prefix: &[&str], group: &[&Setting]| {
            let mut args: Vec<String> = prefix.iter().map(|a| (*a).to_owned()).collect();
            for s in group {
                if let Some(f) = &s.flag {
                    args.push(format!("--{}", f.long));
                    args.push(format!("value-of-{}", f.long));
                }
            }
            Cli::try_parse_from(args).unwrap()
        };
        let check = |flags: &crate::cli::Flags, group: &[&Setting]| {
            for s in group {
                let long = s.flag.as_ref().map(|f| f.long).unwrap_or_default();
                assert_eq!(
                    flags.of(s),
                    Some(format!("value-of-{long}").as_str()),
                    "{}",
                    s.var
                );
            }
        };
        let cli = line(&["opentrusty", "serve", "auth"], SERVE);
        let Command::Serve(serve) = cli.command else {
            panic!("serve")
        };
        check(&serve.options.0, SERVE);
        let cli = line(&["opentrusty", "check", "all"], SERVE);
        let Command::Check(check_args) = cli.command else {
            panic!("check")
        };
        check(&check_args.options.0, SERVE);
        let cli = line(&["opentrusty", "server"], SERVE);
        let Command::Server(server) = cli.command else {
            panic!("server")
        };
        check(&server.0, SERVE);
        let cli = line(&["opentrusty", "bootstrap"], BOOTSTRAP);
        let Command::Bootstrap(bootstrap) = cli.command else {
            panic!("bootstrap")
        };
        check(&bootstrap.0, BOOTSTRAP);
        let cli = line(&["opentrusty", "keys", "rotate"], KEYS);
        let Command::Keys(KeysCommand::Rotate(rotate)) = cli.command else {
            panic!("keys rotate")
        };
        check(&rotate.key.0, KEYS);
        // The database's flags are global: accepted after any command.
        let cli = line(&["opentrusty", "cleanup"], DATABASE);
        check(&cli.database.0, DATABASE);
        // A flag of another command is refused, not ignored.
        assert!(Cli::try_parse_from(["opentrusty", "cleanup", "--issuer", "https://a"]).is_err());
    }

    /// Every `OPENTRUSTY_*` name the documentation, the deployment files and this crate's code
    /// mention is a setting (or the test suite's), so a renamed or removed setting cannot live on
    /// in them.
    #[test]
    fn every_variable_mentioned_is_a_setting() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut files = vec![format!("{root}/README.md")];
        for dir in [
            "docs",
            "docs/design",
            "deploy",
            "crates/server/src",
            "crates/server/tests",
        ] {
            for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    files.push(path.display().to_string());
                }
            }
        }
        let mut unknown = BTreeSet::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let mut rest = text.as_str();
            while let Some(at) = rest.find("OPENTRUSTY_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                let known = name.starts_with(TEST_SUITE_PREFIX)
                    || if name.ends_with('_') {
                        ALL.iter().any(|s| s.var.starts_with(&name))
                    } else {
                        ALL.iter().any(|s| s.var == name)
                    };
                if !known {
                    unknown.insert(format!("{name} in {file}"));
                }
            }
        }
        assert!(unknown.is_empty(), "not settings: {unknown:#?}");
    }

    #[test]
    fn a_misspelt_variable_is_reported_with_the_setting_it_meant() {
        // Spelt in two halves so that the scan of mentioned variables does not see them.
        let (isuer, uri, frobnicate) = (
            concat!("OPENTRUSTY_", "ISUER"),
            concat!("OPENTRUSTY_", "DATABASE_URI"),
            concat!("OPENTRUSTY_", "FROBNICATE"),
        );
        let found = unknown_variables([
            "PATH",
            "OPENTRUSTY_ISSUER",
            isuer,
            uri,
            frobnicate,
            "OPENTRUSTY_TEST_DATABASE_URL",
        ]);
        assert_eq!(
            found,
            vec![
                (uri.to_owned(), Some("OPENTRUSTY_DATABASE_URL")),
                (frobnicate.to_owned(), None),
                (isuer.to_owned(), Some("OPENTRUSTY_ISSUER")),
            ]
        );
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
