//! The `podhost` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use podhost::gateway::{self, Gateway};
use podhost::{Config, Runtime, dev};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

mod objects_command;

#[derive(Parser)]
#[command(
    name = "podhost",
    version,
    about = "A self-hosted runtime for Durable Objects built on WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the classes listed in a config file.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "podhost.toml")]
        config: PathBuf,
        /// Listen here instead of the config's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep data here instead of the config's `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List or delete objects.
    Objects {
        #[command(subcommand)]
        command: objects_command::ObjectsCommand,
    },
    /// Build the repository's examples for wasm32-wasip2 and serve them.
    Dev {
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// The podhost repository (the workspace holding `examples/`).
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Hibernate objects idle this long (e.g. `10s`, `500ms`).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        idle_timeout: Duration,
    },
}

fn main() -> anyhow::Result<()> {
    // Records go to stderr from a thread of their own: a slow reader of
    // the log must not stall the server. Dropping the guard at the end of
    // `main` writes out what is queued.
    let (log_writer, _flush_log) =
        podhost::logs::NonBlockingStderr::start().context("cannot start the log writer")?;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    podhost::os_limits::raise_file_limit();
    let config = match Cli::parse().command {
        Command::Objects { command } => return objects_command::run(command),
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut config = Config::load(&config)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(data_dir) = data_dir {
                config.data_dir = data_dir;
            }
            config
        }
        Command::Dev {
            listen,
            data_dir,
            workspace,
            idle_timeout,
        } => {
            let packages = dev::example_packages(&workspace)?;
            let built = dev::build_guests(
                &workspace,
                &packages,
                &workspace.join("target").join("guests"),
            )?;
            let mut classes = dev::classes(built);
            dev::apply_example_access(&workspace, &mut classes)?;
            dev::example_outbound(&workspace, &mut classes)?;
            let config = Config {
                listen,
                data_dir,
                idle_timeout,
                classes,
                ..Config::default()
            };
            config.validate()?;
            config
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let runtime = Runtime::new(config)?;
    let gateway = Gateway::open(runtime)?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let shutdown = shutdown_signal().context("cannot listen for signals")?;
    // Tools and tests read this line to find the port.
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("podhost listening on http://{address}\n").as_bytes())
        .await?;
    stdout.flush().await?;
    gateway::serve(listener, gateway, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first Ctrl-C or SIGTERM. The handlers are installed
/// now, not when the future is first polled (in a task the server spawns
/// later): a signal sent as soon as the server says it is listening must
/// stop it gracefully, not kill it.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}
