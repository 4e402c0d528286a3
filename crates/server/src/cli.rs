//! The command line: subcommands and the help an operator reads. The flags of settings come from
//! the table in `settings` (each names its `OPENTRUSTY_*` variable in its help); their values are
//! resolved and validated in `config`, so an error names the flag or the variable it came from.

use clap::{Arg, ArgMatches, Args, Parser, Subcommand, ValueEnum};

use crate::settings::{self, Setting};

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
    pub database: DatabaseFlags,

    #[command(subcommand)]
    pub command: Command,
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
    Server(ServeFlags),

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
    Bootstrap(BootstrapFlags),

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

    #[command(flatten)]
    pub key: KeyFlags,
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
    pub options: ServeFlags,
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

/// The values given on the command line for settings, by setting.
#[derive(Debug, Default, Clone)]
pub struct Flags(Vec<(&'static str, String)>);

impl Flags {
    /// The value given for `setting`'s flag, if any.
    pub fn of(&self, setting: &Setting) -> Option<&str> {
        self.0
            .iter()
            .find(|(var, _)| *var == setting.var)
            .map(|(_, v)| v.as_str())
    }

    /// Flags as if these had been given (for tests of the resolution).
    #[cfg(test)]
    pub fn given(pairs: &[(&Setting, &str)]) -> Flags {
        Flags(
            pairs
                .iter()
                .map(|(s, v)| (s.var, (*v).to_owned()))
                .collect(),
        )
    }

    /// Adds the group's flags in the table's order; the global ones (the database's) after a
    /// command's own in its help.
    fn augment(mut command: clap::Command, group: &[&Setting], global: bool) -> clap::Command {
        let first = if global { 1000 } else { 0 };
        for (i, s) in group.iter().enumerate() {
            if let Some(flag) = &s.flag {
                command = command.arg(
                    Arg::new(flag.long)
                        .long(flag.long)
                        .value_name(flag.value)
                        .global(global)
                        .display_order(first + i)
                        .help(s.help_line()),
                );
            }
        }
        command
    }

    fn read(matches: &ArgMatches, group: &[&Setting]) -> Flags {
        let mut given = Vec::new();
        for s in group {
            if let Some(flag) = &s.flag
                && let Ok(Some(v)) = matches.try_get_one::<String>(flag.long)
            {
                given.push((s.var, v.clone()));
            }
        }
        Flags(given)
    }
}

/// A group of settings' flags as a clap argument group of its own.
macro_rules! flag_group {
    ($(#[$doc:meta])* $name:ident, $group:expr, global = $global:expr) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone)]
        pub struct $name(pub Flags);

        impl clap::FromArgMatches for $name {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                Ok(Self(Flags::read(matches, $group)))
            }
            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                self.0 = Flags::read(matches, $group);
                Ok(())
            }
        }

        impl Args for $name {
            fn augment_args(command: clap::Command) -> clap::Command {
                Flags::augment(command, $group, $global)
            }
            fn augment_args_for_update(command: clap::Command) -> clap::Command {
                Flags::augment(command, $group, $global)
            }
        }
    };
}

flag_group!(
    /// Where the database is and how it is used: flags of every command.
    DatabaseFlags,
    settings::DATABASE,
    global = true
);
flag_group!(
    /// Flags of `serve`, `server` and `check`.
    ServeFlags,
    settings::SERVE,
    global = false
);
flag_group!(
    /// Flags of `bootstrap`.
    BootstrapFlags,
    settings::BOOTSTRAP,
    global = false
);
flag_group!(
    /// Flags of `keys rotate`.
    KeyFlags,
    settings::KEYS,
    global = false
);
