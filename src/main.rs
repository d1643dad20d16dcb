//! The `quiver` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quiver::Config;

#[derive(Parser)]
#[command(
    name = "quiver",
    version,
    about = "A vector database that speaks the PostgreSQL wire protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Postgres wire protocol on an embedded local data directory.
    Serve {
        /// Data directory (default ./quiver-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:5433).
        #[arg(long)]
        listen: Option<String>,
        /// TOML configuration file; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve {
        data_dir,
        listen,
        config,
    } = cli.command;
    let mut cfg = match config {
        Some(path) => match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("quiver: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quiver: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let server = match quiver::start(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("quiver: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "Quiver listening on {} (data in {})",
            server.addr,
            cfg.data_dir.display()
        );
        println!(
            "Connect with: psql -h {} -p {} -U postgres",
            server.addr.ip(),
            server.addr.port()
        );
        shutdown_signal().await;
        tracing::info!("shutting down");
        if let Err(e) = server.shutdown().await {
            tracing::warn!(error = %e, "accept loop ended with an error");
        }
        ExitCode::SUCCESS
    })
}
