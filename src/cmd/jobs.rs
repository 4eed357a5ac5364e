//! `limpq jobs`: list the daemon's jobs.
use limpq_trainer::daemon::protocol::JobState;

use super::serve::Endpoint;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let jobs = args
        .endpoint
        .connect()?
        .list()
        .map_err(anyhow::Error::msg)?;
    println!(
        "{:>4}  {:<12}  {:<8}  {:<24}  progress",
        "id", "state", "kind", "name"
    );
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
        println!(
            "{:>4}  {:<12}  {:<8}  {:<24}  {progress}",
            j.id, state, j.kind, j.name
        );
        if let JobState::Failed(m) = &j.state {
            println!("      {m}");
        }
    }
    Ok(())
}
