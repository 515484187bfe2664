//! This machine's ceilings, measured in the same run as the scenarios
//! (`bench/run.sh`), so each podhost figure can be read as a fraction of
//! what the machine allows:
//!
//!     ceilings http PORT
//!     ceilings durable-writes [--threads 16] [--files 1000] [--seconds 8] --dir DIR
//!     ceilings file-create [--threads 16] [--dirs 256] [--seconds 8] --dir DIR
//!     ceilings fanout [--connections 10000] [--rounds 20]
//!
//! The disk ceilings print one line, `RESULT <ops/s> <p50 ms> <p99 ms>`;
//! `fanout` prints `RESULT <µs of CPU per delivery>`.

mod durable_writes;
mod fanout;
mod file_create;
mod http;
mod scratch;
mod timed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "This machine's limits, for the benchmarks to be read against")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a handler that does nothing on 127.0.0.1:PORT with podhost's
    /// server stack (hot read's ceiling). Prints nothing but errors.
    Http {
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    },
    /// Overwrite 4 KiB of one of many files, then fdatasync, from several
    /// threads (the ceiling of spread writes, and of hot writes).
    DurableWrites {
        #[command(flatten)]
        run: Run,
        /// Files written in turn, all kept open.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        files: u32,
    },
    /// Create a file, write 4 KiB, fdatasync it and fsync its directory,
    /// from several threads (the ceiling of a new object per request).
    FileCreate {
        #[command(flatten)]
        run: Run,
        /// Directories the new files are spread over, like podhost's
        /// `objects/<class>/<id[0..2]>/`.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
        dirs: u32,
    },
    /// Write a small WebSocket frame to each of many loopback connections
    /// that another process reads, and report the writing thread's CPU
    /// per frame (the floor under fan-out's server CPU per delivery).
    Fanout {
        /// Connections written to, one frame each per round.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        connections: u32,
        /// Rounds, 200 ms apart.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        rounds: u32,
    },
    /// The reading side of `fanout`, started by it.
    #[command(hide = true)]
    FanoutClient { port: u16, connections: u32 },
}

/// What both disk ceilings take.
#[derive(clap::Args)]
struct Run {
    /// Threads doing the operation at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// How long to measure.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// An existing directory in the file system to measure (e.g. the data
    /// directory's); a directory of the tool's own is made in it and
    /// removed afterwards.
    #[arg(long)]
    dir: PathBuf,
}

impl Run {
    fn settings(&self) -> timed::Settings {
        timed::Settings {
            threads: self.threads as usize,
            duration: Duration::from_secs(self.seconds),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Http { port } => http::serve(port),
        Command::DurableWrites { run, files } => {
            durable_writes::measure(&run.dir, files as usize, run.settings())
                .map(|summary| summary.print())
        }
        Command::FileCreate { run, dirs } => {
            file_create::measure(&run.dir, dirs as usize, run.settings())
                .map(|summary| summary.print())
        }
        Command::Fanout {
            connections,
            rounds,
        } => fanout::measure(connections as usize, rounds as usize)
            .map(|micros| println!("RESULT {micros:.2}")),
        Command::FanoutClient { port, connections } => fanout::client(port, connections as usize),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ceilings: {error:#}");
            ExitCode::FAILURE
        }
    }
}
