//! `limpq serve`: run the trainer daemon in the foreground.
use std::path::PathBuf;

use anyhow::Context;
use limpq_trainer::daemon::{self, client::Client, Config};

/// Where the daemon lives; shared by `serve` and every client command.
#[derive(clap::Args, Clone, Debug)]
pub struct Endpoint {
    /// Unix socket [default: $LIMPQ_SOCKET, else $XDG_RUNTIME_DIR/limpq.sock, else STATE/daemon.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// State directory [default: $XDG_STATE_HOME/limpq, else ~/.local/state/limpq]
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

impl Endpoint {
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state {
            Some(s) => Ok(s.clone()),
            None => Ok(daemon::default_state_dir()?),
        }
    }

    pub fn socket_path(&self) -> anyhow::Result<PathBuf> {
        match &self.socket {
            Some(s) => Ok(s.clone()),
            None => Ok(daemon::default_socket(&self.state_dir()?)),
        }
    }

    pub fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.socket_path()?).map_err(anyhow::Error::msg)
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Worker threads taking jobs from the queue (one per GPU adapter; at least 1).
    #[arg(long, default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: usize,
    /// The adapter of one worker (repeat: the first for worker 0, the next for worker 1, ...;
    /// as `--adapter` writes it). As many workers as values are started unless `--workers`
    /// asks for more; workers without one take `--adapter` / LIMPQ_ADAPTER's choice.
    #[arg(long = "worker-adapter", value_name = "N|NAME|BACKEND[:N|NAME]")]
    pub worker_adapter: Vec<limpq_trainer::gpu::AdapterPick>,
    /// TEST-ONLY: accept the `Count` job kind used by the daemon's tests.
    #[arg(long, hide = true)]
    pub test_jobs: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let state = args.endpoint.state_dir()?;
    let socket = args.endpoint.socket_path()?;
    let mut cfg = Config::new(socket.clone(), state.clone());
    cfg.workers = args.workers.max(args.worker_adapter.len());
    cfg.worker_adapters = args.worker_adapter;
    cfg.test_jobs = args.test_jobs;
    // Announced once the socket is bound, so a failed start prints only its error.
    daemon::run_then(cfg, || {
        eprintln!(
            "limpq daemon: listening on {} (state in {}); stop with Ctrl-C or `limpq shutdown`",
            socket.display(),
            state.display()
        )
    })
    .context("limpq serve")
}
