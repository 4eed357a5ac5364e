//! `limpq jobs`: list the daemon's jobs.
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
            limpq_trainer::daemon::protocol::JobState::Failed(_) => "failed".to_string(),
            s => s.to_string(),
        };
        let progress = j
            .progress
            .as_ref()
            .map(super::watch::describe)
            .unwrap_or_default();
        println!(
            "{:>4}  {:<12}  {:<8}  {:<24}  {progress}",
            j.id, state, j.kind, j.name
        );
        if let limpq_trainer::daemon::protocol::JobState::Failed(m) = &j.state {
            println!("      {m}");
        }
    }
    Ok(())
}
