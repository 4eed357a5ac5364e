//! `limpq watch ID`: follow a job's progress until it ends.
use indicatif::{ProgressBar, ProgressStyle};
use limpq_trainer::daemon::client::Client;
use limpq_trainer::daemon::protocol::{JobId, JobState, Progress, Response};

use super::serve::Endpoint;

#[derive(clap::Args)]
pub struct Args {
    /// Job id (as printed by `limpq submit` and `limpq jobs`).
    pub id: JobId,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    follow(&mut args.endpoint.connect()?, args.id)
}

/// One line for a progress report: stage, epoch, step, loss, accuracy, images/s, ETA.
pub fn describe(p: &Progress) -> String {
    let mut s = p.stage.clone();
    if let Some((e, n)) = p.epoch {
        s += &format!(" epoch {e}/{n}");
    }
    if let Some((k, n)) = p.step {
        s += &format!(" step {k}/{n}");
    }
    if let Some(l) = p.loss {
        s += &format!(" loss {l:.4}");
    }
    if let Some(a) = p.accuracy {
        s += &format!(" acc {:.2}%", a * 100.0);
    }
    if let Some(r) = p.images_per_sec {
        s += &format!(" {r:.0} img/s");
    }
    if let Some(t) = p.eta_secs {
        s += &format!(" eta {t:.0}s");
    }
    s
}

/// Stream a job's events into a progress bar (on stderr; hidden when not a terminal) and
/// its log lines; an error when the job does not end done.
pub fn follow(client: &mut Client, id: JobId) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    let hidden = bar.is_hidden();
    // The job's last log line: a failed job logs its error as `error: …`, which then
    // need not be printed a second time as the command's own error.
    let mut last_line = String::new();
    let info = client
        .watch(id, |r| match r {
            Response::Progress(_, p) => {
                if let Some((k, n)) = p.step {
                    bar.set_length(n);
                    bar.set_position(k);
                }
                bar.set_message(describe(p));
            }
            Response::Log(_, line) => {
                last_line.clone_from(line);
                if hidden {
                    eprintln!("job {id}: {line}");
                } else {
                    bar.println(format!("job {id}: {line}"));
                }
            }
            Response::Job(info) => bar.set_message(info.state.to_string()),
            _ => {}
        })
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    match &info.state {
        JobState::Done => {
            eprintln!("job {id} done; outputs in {}", info.output_dir);
            Ok(())
        }
        JobState::Interrupted => anyhow::bail!(
            "job {id} was interrupted by a daemon shutdown; it resumes from its checkpoint when the daemon restarts"
        ),
        JobState::Failed(m) if last_line.strip_prefix("error: ") == Some(m.as_str()) => {
            anyhow::bail!("job {id} failed: its error is the log line above")
        }
        s => anyhow::bail!("job {id} {s}"),
    }
}
