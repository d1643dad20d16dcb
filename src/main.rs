//! The `quiver` command.

// `main` awaits the server, whose futures hold whole statements' executions
// (see lib.rs).
#![recursion_limit = "256"]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quiver::Config;

/// The server's allocator. Against glibc's (tuned as below) it took a search
/// on the mixed benchmark's table from about 500 to 400–450 µs of server CPU
/// (bench/RESULTS.md); glibc spent 13 % of it in malloc and free,
/// consolidating chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's purge delay, an index into `mi_option_t` of the mimalloc v3
/// that libmimalloc-sys 0.1.49 (pinned in Cargo.lock) builds. With mimalloc's
/// defaults the bounded-memory test's peak RSS was twice glibc's: transparent
/// huge pages on its arenas (off at build time: the `no_thp` feature; the
/// first arena is mapped before `main`, too early for an option) and freed
/// pages returned only after a delay (0 here). With both it is 9–13 % above
/// glibc's.
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// glibc malloc arenas, for what still allocates with glibc (C libraries).
/// With its default (8 per core) freed COPY, scan and search buffers stayed
/// resident in per-thread arenas: on the bounded-memory test the peak RSS was
/// 1.6x that with 2 arenas.
const MALLOC_ARENAS: i32 = 2;

/// Allocations from this size up get their own mapping, returned to the OS when
/// freed (glibc otherwise raises the threshold as large blocks are freed, and
/// then keeps column chunks evicted from the cache in its heap).
const MALLOC_MMAP_THRESHOLD: i32 = 256 << 10;

#[allow(unsafe_code)]
fn tune_allocators() {
    // SAFETY: mi_option_set only stores an option value (read when mimalloc
    // next purges); called before other threads exist.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    }
}

/// Lance's per-scan I/O buffer (its default is 2 GiB per scan), unless the
/// environment already sets one.
const LANCE_IO_BUFFER_ENV: &str = "LANCE_DEFAULT_IO_BUFFER_SIZE";

#[allow(unsafe_code)]
fn bound_lance_io_buffers() {
    if std::env::var_os(LANCE_IO_BUFFER_ENV).is_none() {
        // SAFETY: called first thing in `main`, before the runtime or any other
        // thread exists, so nothing reads the environment concurrently.
        unsafe {
            std::env::set_var(
                LANCE_IO_BUFFER_ENV,
                quiver_engine::memory::SCAN_IO_BUFFER_BYTES.to_string(),
            )
        };
    }
}

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
        /// Data directory: a folder (default ./quiver-data) or s3://bucket/prefix.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:5433).
        #[arg(long)]
        listen: Option<String>,
        /// TOML configuration file; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Memory for cached table data, e.g. 256MiB or 2GiB (config `[cache] memory`).
        #[arg(long)]
        cache_memory: Option<String>,
        /// Address of /metrics, /healthz and /readyz (default 127.0.0.1:9433;
        /// "" for none; config `[metrics] listen`).
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Print configuration.
    Config {
        /// A complete config file with every key at its default, commented.
        #[arg(long)]
        defaults: bool,
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
    tune_allocators();
    bound_lance_io_buffers();
    let cli = Cli::parse();
    let (data_dir, listen, config, cache_memory, metrics_listen) = match cli.command {
        Command::Serve {
            data_dir,
            listen,
            config,
            cache_memory,
            metrics_listen,
        } => (data_dir, listen, config, cache_memory, metrics_listen),
        Command::Config { defaults: true } => {
            print!("{}", Config::defaults_file());
            return ExitCode::SUCCESS;
        }
        Command::Config { defaults: false } => {
            eprintln!("quiver config: say what to print (--defaults)");
            return ExitCode::from(2);
        }
    };
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
    if let Some(m) = cache_memory {
        cfg.cache.memory = m;
    }
    if let Some(m) = metrics_listen {
        cfg.metrics.listen = m;
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
            cfg.data_location()
        );
        println!(
            "Connect with: psql -h {} -p {} -U postgres",
            server.addr.ip(),
            server.addr.port()
        );
        if let Some(m) = server.metrics_addr {
            println!("Metrics at http://{m}/metrics");
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        if let Err(e) = server.shutdown().await {
            tracing::warn!(error = %e, "accept loop ended with an error");
        }
        ExitCode::SUCCESS
    })
}
