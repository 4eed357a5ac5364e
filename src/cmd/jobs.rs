//! `limpq jobs`: list the daemon's jobs, or remove finished ones (`--remove ID`, `--prune`).
use std::fmt::Write as _;

use limpq_trainer::daemon::protocol::{JobInfo, JobState};

use super::out::OutputFormat;
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
    /// `table`: a row per job; `json` / `ron`: the list of jobs with every field the daemon
    /// reports (state and failure, times, resumes, progress, output folder).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
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
    args.format.print(&jobs, || table(&jobs))
}

fn table(jobs: &[JobInfo]) -> String {
    let mut out = format!(
        "{:>4}  {:<12}  {:<8}  {:<24}  progress\n",
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
        let _ = writeln!(
            out,
            "{:>4}  {:<12}  {:<8}  {:<24}  {progress}",
            j.id,
            state,
            j.kind,
            printable(&j.name)
        );
        if let JobState::Failed(m) = &j.state {
            let _ = writeln!(out, "      {}", printable(m));
        }
    }
    out
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`): a job's name or error is one
/// line of the table, and an escape sequence in it would reach the terminal. (Names with
/// control characters are refused at submission; a state folder may still hold one.)
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            super::printable("évil\n   9  done\u{1b}[31mRED"),
            "évil\\n   9  done\\u{1b}[31mRED"
        );
    }
}
