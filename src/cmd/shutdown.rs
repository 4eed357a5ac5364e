//! `limpq shutdown`: stop the daemon; a running job checkpoints and resumes on the next start.
use limpq_trainer::daemon::protocol::Request;

use super::serve::Endpoint;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut c = args.endpoint.connect()?;
    c.request(&Request::Shutdown).map_err(anyhow::Error::msg)?;
    eprintln!("the daemon is shutting down");
    Ok(())
}
