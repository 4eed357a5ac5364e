//! `limpq submit JOB.ron [--watch]`: queue a job on the daemon.
use std::path::PathBuf;

use limpq_trainer::daemon::job::JobSpec;

use super::serve::Endpoint;

#[derive(clap::Args)]
pub struct Args {
    /// Job file (RON: a Solve, Train, Indicators, Finetune, Eval or Pipeline job, or a
    /// `limpq pipeline` job file as it is); relative paths inside it are taken from its
    /// directory.
    pub job: PathBuf,
    /// Follow the job with a progress bar until it ends.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let spec = JobSpec::from_file(&args.job).map_err(anyhow::Error::msg)?;
    let mut client = args.endpoint.connect()?;
    let id = client.submit(spec).map_err(anyhow::Error::msg)?;
    crate::outln!("{id}")?;
    if args.watch {
        super::watch::follow(&mut client, id)?;
    }
    Ok(())
}
