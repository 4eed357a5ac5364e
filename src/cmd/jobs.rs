//! `limpq jobs`: list the daemon's jobs, or remove finished ones (`--remove ID`, `--prune`).
use std::io::Write;

use limpq_trainer::daemon::protocol::{JobInfo, JobState};

use super::serve::Endpoint;

#[derive(clap::Args)]
pub struct Args {
    /// Remove every done, failed and cancelled job (their folders in the state directory
    /// go too; a pipeline's own output folder stays).
    #[arg(long, conflicts_with = "remove")]
    pub prune: bool,
    /// Remove one done, failed or cancelled job (cancel a live job first).
    #[arg(long, value_name = "ID")]
    pub remove: Option<u64>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect()?;
    if let Some(id) = args.remove {
        client.remove(id).map_err(anyhow::Error::msg)?;
        eprintln!("job {id} removed");
        return Ok(());
    }
    if args.prune {
        let n = client.prune().map_err(anyhow::Error::msg)?;
        eprintln!("{n} finished job(s) removed");
        return Ok(());
    }
    let jobs = client.list().map_err(anyhow::Error::msg)?;
    match print_table(&mut std::io::stdout().lock(), &jobs) {
        // A reader that stopped early (`limpq jobs | head -1`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(Into::into),
    }
}

fn print_table(out: &mut impl Write, jobs: &[JobInfo]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>4}  {:<12}  {:<8}  {:<24}  progress",
        "id", "state", "kind", "name"
    )?;
    for j in jobs {
        let state = match &j.state {
            JobState::Failed(_) => "failed".to_string(),
            s => s.to_string(),
        };
        // Progress only means something while the job can still move.
        let live = matches!(j.state, JobState::Running | JobState::Interrupted);
        let progress = match (&j.progress, live) {
            (Some(p), true) => super::watch::describe(p),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:>4}  {:<12}  {:<8}  {:<24}  {progress}",
            j.id, state, j.kind, j.name
        )?;
        if let JobState::Failed(m) = &j.state {
            writeln!(out, "      {m}")?;
        }
    }
    out.flush()
}
