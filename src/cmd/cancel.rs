//! `limpq cancel ID`: cancel a queued or running job.
use limpq_trainer::daemon::protocol::{JobId, Request};

use super::serve::Endpoint;

#[derive(clap::Args)]
pub struct Args {
    /// The job's id (as `limpq submit` and `limpq jobs` print it).
    pub id: JobId,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut c = args.endpoint.connect()?;
    c.request(&Request::Cancel(args.id))
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "job {} cancelled (a running job stops at its next step)",
        args.id
    );
    Ok(())
}
