//! The `podhost` command.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use podhost::cluster::{Cluster, SharedCatalog};
use podhost::config::{Access, ClusterSettings};
use podhost::dev::reload;
use podhost::gateway::{self, Gateway};
use podhost::{Config, Runtime, dev};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

mod deploy_command;
mod objects_command;
mod restore_command;

/// mimalloc rather than glibc's allocator: after a host has made and
/// dropped thousands of instances and statements, glibc's bins are
/// fragmented and its `malloc` searches them (`_int_malloc` went from 1.7%
/// to 7.5% of a hot read's profile after a spread run, with
/// `malloc_consolidate` on top). SQLite keeps its own page cache and
/// lookaside (see `storage/memory.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The config file (default: podhost.toml; without one, the
        /// defaults and the classes deployed to the data directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen here instead of the config's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep data here instead of the config's `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Join a cluster of nodes through etcd:
        /// `etcd://host:port[,host:port...][/prefix]` (the same as
        /// `[cluster] etcd` in the config file, whose other settings stay).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// List or delete objects.
    Objects {
        #[command(subcommand)]
        command: objects_command::ObjectsCommand,
    },
    /// Rebuild a whole data directory from a replication store: every
    /// object's latest state.
    RestoreAll(restore_command::RestoreAllArgs),
    /// Deploy a class to a running server (`PUT /admin/classes/{class}`).
    Deploy(deploy_command::DeployArgs),
    /// Build the repository's examples (and `--class` crates) for
    /// wasm32-wasip2 and serve them; rebuild and redeploy a class when its
    /// sources change.
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
        /// A guest crate of your own (its directory), served under its
        /// package name; may be repeated. Without `examples/` in the
        /// workspace, only these are served.
        #[arg(long = "class")]
        classes: Vec<PathBuf>,
        /// The access of the `--class` crates' classes (public, user,
        /// org, key, admin).
        #[arg(long, default_value = "public")]
        access: String,
        /// The admin token (at least 32 bytes), for `/admin` and the
        /// operator's routes: making API keys and handles from the shell.
        /// Without it, a random one is made and printed at start.
        #[arg(long)]
        admin_token: Option<String>,
        /// Serve this directory's static files at `/` (default:
        /// `examples/notes/web` of the workspace, when it exists).
        #[arg(long)]
        assets: Option<PathBuf>,
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
        Command::Deploy(args) => return deploy_command::run(args),
        Command::RestoreAll(args) => return restore_command::restore_all(args),
        Command::Serve {
            config,
            listen,
            data_dir,
            cluster,
        } => {
            let default = PathBuf::from("podhost.toml");
            let mut config = match config {
                Some(path) => Config::load(&path)?,
                None if default.exists() => Config::load(&default)?,
                None => {
                    tracing::info!(
                        "no podhost.toml: serving the deployed classes with the defaults"
                    );
                    Config::default()
                }
            };
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(etcd) = cluster {
                match &mut config.cluster {
                    Some(settings) => {
                        settings.etcd = etcd;
                        settings.check()?;
                    }
                    None => config.cluster = Some(ClusterSettings::from_url(&etcd)?),
                }
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
            classes,
            access,
            admin_token,
            assets,
        } => {
            let (config, watched) = dev_config(&workspace, &classes, &access)?;
            let admin_token = match admin_token {
                Some(token) => token,
                None => {
                    let token = dev::random_admin_token()?;
                    println!("dev: admin token {token} (random; --admin-token TOKEN sets one)");
                    token
                }
            };
            println!("dev: the admin page is http://{listen}/admin/");
            let config = Config {
                listen,
                data_dir,
                idle_timeout,
                admin_token: Some(podhost::config::Secret::new(admin_token)),
                // Dev mode has accounts on whatever it serves: sign up,
                // sign in and API keys work from the first start.
                auth: Some(config.auth.clone().unwrap_or_default()),
                assets: dev_assets(&workspace, assets),
                ..config
            };
            config.validate()?;
            return run(serve(config, watched));
        }
    };
    run(serve(config, Vec::new()))
}

fn run(server: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(server)
}

/// The static files `podhost dev` serves: `--assets`, else the notes
/// example's web UI once it exists; built first when it is an npm package.
fn dev_assets(workspace: &Path, given: Option<PathBuf>) -> Option<podhost::config::AssetSettings> {
    let dir = given.or_else(|| {
        let notes = workspace.join("examples").join("notes").join("web");
        notes.is_dir().then_some(notes)
    })?;
    // A web UI with a build step (an npm package) is built first; one
    // that fails to build is served as it is, with the error shown.
    if let Err(error) = dev::web::build_web(&dir) {
        eprintln!(
            "dev: the web UI in {} was not built: {error:#}",
            dir.display()
        );
    }
    println!("dev: serving the static files of {} at /", dir.display());
    Some(podhost::config::AssetSettings { dir })
}

/// `podhost dev`'s classes: the workspace's examples (each served as its
/// manifest says, see `dev::example_manifest`) and the `--class` crates
/// (with `--access`), built, with what keeps each in step with its sources.
fn dev_config(
    workspace: &Path,
    crates: &[PathBuf],
    access: &str,
) -> anyhow::Result<(Config, Vec<reload::Watched>)> {
    let examples = if crates.is_empty() || workspace.join("examples").is_dir() {
        dev::example_crates(workspace)?
    } else {
        Vec::new()
    };
    let packages: Vec<String> = examples.iter().map(|(name, _)| name.clone()).collect();
    // Taken before the build, so an edit made meanwhile is not missed.
    let examples: Vec<_> = examples
        .into_iter()
        .map(|(name, dir)| {
            let built_from = reload::newest_change(&dir);
            (name, dir, built_from)
        })
        .collect();
    let built = if packages.is_empty() {
        BTreeMap::new()
    } else {
        dev::build_guests(
            workspace,
            &packages,
            &workspace.join("target").join("guests"),
        )?
    };
    let mut classes = BTreeMap::new();
    let mut tables = BTreeMap::new();
    let mut watched = Vec::new();
    let mut serve = |target: reload::Watched, wasm: &Path| -> anyhow::Result<()> {
        let class = podhost::deploy::class_config(&target.config, wasm)
            .map_err(|error| anyhow::anyhow!("class {}: {error}", target.class))?;
        classes.insert(target.class.clone(), class);
        tables.insert(target.class.clone(), target.config.clone());
        watched.push(target);
        Ok(())
    };
    for (package, dir, built_from) in examples {
        let Some(wasm) = built.get(&package) else {
            continue;
        };
        let manifest = dev::example_manifest(&dir, &package)?;
        for class in manifest.classes {
            let target = reload::Watched {
                class,
                dir: dir.clone(),
                build: reload::Build::Workspace {
                    workspace: workspace.to_path_buf(),
                    package: package.clone(),
                },
                config: manifest.table.clone(),
                built_from,
            };
            serve(target, wasm)?;
        }
    }
    let access_value = serde_json::json!(access);
    serde_json::from_value::<Access>(access_value.clone())
        .with_context(|| format!("--access {access:?}: use public, user, org, key or admin"))?;
    let members = if crates.is_empty() {
        Vec::new()
    } else {
        dev::workspace_members(workspace)
    };
    for dir in crates {
        let manifest = dir.join("Cargo.toml");
        let name = dev::package_name(&manifest)?;
        let built_from = reload::newest_change(dir);
        // A member of the workspace builds with the examples (and shares
        // their compiled dependencies); a crate of its own, on its own.
        let member = manifest
            .canonicalize()
            .is_ok_and(|manifest| members.contains(&manifest));
        let build = if member {
            reload::Build::Workspace {
                workspace: workspace.to_path_buf(),
                package: name.clone(),
            }
        } else {
            reload::Build::Crate {
                manifest: manifest.clone(),
            }
        };
        let target = reload::Watched {
            class: name,
            dir: dir.clone(),
            build,
            config: serde_json::json!({ "access": access_value }),
            built_from,
        };
        let wasm = target.build()?;
        serve(target, &wasm)?;
    }
    let config = Config {
        classes,
        class_tables: tables,
        ..Config::default()
    };
    Ok((config, watched))
}

async fn serve(config: Config, watched: Vec<reload::Watched>) -> anyhow::Result<()> {
    let listen = config.listen;
    // A cluster's shared tables are loaded before anything reads them.
    let shared = match &config.cluster {
        Some(settings) => Some(SharedCatalog::start(settings, &config.data_dir).await?),
        None => None,
    };
    let runtime = match &shared {
        Some(shared) => Runtime::with_writes(config, shared.writes())?,
        None => Runtime::new(config)?,
    };
    if !watched.is_empty() {
        tokio::spawn(reload::watch(Arc::clone(&runtime), watched));
    }
    let gateway = Gateway::open(Arc::clone(&runtime))?;
    // What the node keeps in memory follows the rows any node writes
    // (once the gateway's accounts listen too).
    if let Some(shared) = &shared {
        let following = Arc::downgrade(&runtime);
        shared.listen(move |changes| {
            if let Some(runtime) = following.upgrade() {
                runtime.shared_rows_applied(changes);
            }
        });
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let cluster = match runtime.config().cluster.clone() {
        Some(settings) => {
            let data_dir = runtime.config().data_dir.clone();
            Some(Cluster::join(&settings, &data_dir, address, &runtime).await?)
        }
        None => None,
    };
    let gateway = match &cluster {
        Some(cluster) => gateway.with_cluster(Arc::clone(cluster)),
        None => gateway,
    };
    let signal = shutdown_signal().context("cannot listen for signals")?;
    // A cluster node hands its objects over before it stops accepting.
    let draining = cluster.clone();
    let shutdown = async move {
        signal.await;
        if let Some(cluster) = draining {
            cluster.drain(&runtime).await;
        }
    };
    // Tools and tests read this line to find the port.
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("podhost listening on http://{address}\n").as_bytes())
        .await?;
    stdout.flush().await?;
    gateway::serve(listener, gateway, shutdown).await?;
    if let Some(cluster) = cluster {
        cluster.leave().await;
    }
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
