//! The `opentrusty` binary: parses the command line, validates configuration, and runs one of
//! `serve`, `migrate` or `bootstrap`. Exit codes: 0 success, 1 runtime failure, 2 invalid
//! configuration or usage.

mod app;
mod cli;
mod commands;
mod config;
mod connections;
mod serve;
mod settings;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::{ConfigError, LogFormat, Mode, ProcessEnv};

/// A runtime failure, reported as one line on stderr with exit code 1.
#[derive(Debug)]
pub struct Failure(pub String);

pub enum Exit {
    Config(ConfigError),
    Failure(Failure),
}

impl From<ConfigError> for Exit {
    fn from(e: ConfigError) -> Self {
        Exit::Config(e)
    }
}

impl From<Failure> for Exit {
    fn from(e: Failure) -> Self {
        Exit::Failure(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit::Config(e)) => {
            eprintln!("error: invalid configuration: {e}");
            ExitCode::from(2)
        }
        Err(Exit::Failure(Failure(message))) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// One line on stderr for each `OPENTRUSTY_*` variable that is no setting (a misspelt one
/// would otherwise be ignored in silence). Names only: a value may be a secret.
fn warn_of_unknown_variables() {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    for (name, near) in settings::unknown_variables(names.iter().map(String::as_str)) {
        match near {
            Some(meant) => eprintln!(
                "warning: {name} is not a setting of this release and is ignored; did you mean {meant}?"
            ),
            None => eprintln!("warning: {name} is not a setting of this release and is ignored"),
        }
    }
}

async fn run(cli: Cli) -> Result<(), Exit> {
    let env = ProcessEnv;
    warn_of_unknown_variables();
    let database = config::database(&env, &cli.database.0)?;
    match cli.command {
        Command::Serve(args) => {
            let mode = config::mode(&env, args.mode)?;
            let settings = config::serve(&env, mode, database, &args.options.0)?;
            init_logging(settings.log_format, &settings.log_filter);
            serve::run(settings).await?;
        }
        Command::Server(options) => {
            let settings = config::serve(&env, Mode::All, database, &options.0)?;
            init_logging(settings.log_format, &settings.log_filter);
            serve::run(settings).await?;
        }
        Command::Migrate(args) => {
            init_logging(LogFormat::Text, "warn");
            let store = commands::open(&database).await?;
            let out = &mut std::io::stdout();
            let result = if args.dry_run {
                commands::migrate_dry_run(&store, out).await
            } else {
                commands::migrate(&store, args.status, out).await
            };
            store.close().await;
            result?;
        }
        Command::Keys(command) => {
            init_logging(LogFormat::Text, "warn");
            let store = commands::open(&database).await?;
            let result = async {
                commands::require_current_schema(&store).await?;
                match command {
                    cli::KeysCommand::List => {
                        commands::list_keys(&store, &mut std::io::stdout()).await
                    }
                    cli::KeysCommand::Rotate(args) => {
                        let master_key =
                            match config::secret(&env, Mode::All, &database, &args.key.0)? {
                                config::SecretSource::Configured(k) => k,
                                config::SecretSource::DevelopmentFile(p) if p.exists() => {
                                    serve::development_key(&p)?
                                }
                                config::SecretSource::DevelopmentFile(_) => {
                                    return Err(Exit::Config(ConfigError {
                                        name: settings::SECRET_KEY.var.to_owned(),
                                        problem: "is required to create a signing key".to_owned(),
                                    }));
                                }
                            };
                        commands::rotate_keys(
                            &store,
                            &master_key,
                            &args.alg,
                            &mut std::io::stdout(),
                        )
                        .await
                    }
                }
            }
            .await;
            store.close().await;
            result?;
        }
        Command::Cleanup => {
            init_logging(LogFormat::Text, "warn");
            let store = commands::open(&database).await?;
            let result = async {
                commands::require_current_schema(&store).await?;
                commands::cleanup(&store, &mut std::io::stdout()).await
            }
            .await;
            store.close().await;
            result?;
        }
        Command::Check(args) => {
            let mode = config::mode(&env, args.mode)?;
            let settings = config::serve(&env, mode, database, &args.options.0)?;
            init_logging(LogFormat::Text, "warn");
            commands::check(&settings, &mut std::io::stdout()).await?;
        }
        Command::Bootstrap(args) => {
            let hasher = config::hashing(&env, &args.0)?;
            let admin = config::bootstrap(&env, &args.0)?.ok_or_else(|| ConfigError {
                name: settings::BOOTSTRAP_ADMIN_EMAIL.var.to_owned(),
                problem: "is required (or pass --email)".to_owned(),
            })?;
            init_logging(LogFormat::Text, "warn");
            let store = commands::open(&database).await?;
            let result = async {
                commands::require_current_schema(&store).await?;
                commands::bootstrap(&store, &hasher, &admin, &mut std::io::stdout()).await
            }
            .await;
            store.close().await;
            result?;
        }
    }
    Ok(())
}

/// JSON lines on stdout for the production planes; readable text on stderr for development and
/// for the one-shot commands, whose own output on stdout stays clean.
fn init_logging(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
