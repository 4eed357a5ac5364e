//! `limpq indicators`: joint LSQ indicator training on the GPU from a full-precision
//! checkpoint; writes an indicator file `limpq solve` reads unchanged.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::method::{joint_train_full, JointConfig, MethodError, RunConfig};

use super::progress::{stop_on_ctrl_c, Progress};
use super::run_args::RunArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Built-in model (small_cnn, resnet20, ...) or MODEL.ron; must match the checkpoint.
    #[arg(long)]
    pub model: String,
    /// Full-precision checkpoint written by `limpq train` (`--init` is an older
    /// spelling).
    #[arg(long, alias = "init")]
    pub ckpt: PathBuf,
    /// Candidate bit-widths (weights and activations), ascending.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6")]
    pub bits: Vec<u32>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Also keep the joint state (weights, switchable BN sets, step tensors, momentum) here:
    /// rewritten after every epoch, and at Ctrl-C with the exact position.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue the run whose state --checkpoint holds (stopped with Ctrl-C, or cut short:
    /// from its last epoch end) exactly where it stopped; the other settings must be the same.
    #[arg(long, requires = "checkpoint")]
    pub resume: bool,
    /// Indicator file to write (RON; JSON if it ends in .json).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// The state a `--resume` continues from: `--checkpoint`'s file. Without `--resume`, a
/// run stopped in that file is refused ([`super::ckpt::refuse_stopped_run`]).
pub fn resume_state(resume: bool, path: Option<&Path>) -> anyhow::Result<Option<Arc<Checkpoint>>> {
    match (resume, path) {
        (true, Some(p)) => {
            let ck = Checkpoint::load(p)
                .with_context(|| format!("--resume: no run to continue in {}", p.display()))?;
            Ok(Some(Arc::new(ck)))
        }
        (false, Some(p)) => {
            super::ckpt::refuse_stopped_run(p)?;
            Ok(None)
        }
        (_, None) => Ok(None),
    }
}

/// A stop as the final error: where the state is and how to continue.
pub fn stopped_error(e: MethodError, how: &str) -> anyhow::Error {
    match &e {
        MethodError::Stopped { state, .. } if state.saved.is_some() => {
            anyhow::anyhow!("{e}: add --resume to the same command to continue")
        }
        MethodError::Stopped { .. } => anyhow::anyhow!("{e}: {how}"),
        _ => e.into(),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.run.check()?;
    // What the joint run refuses, refused as a usage error before anything is read.
    limpq_trainer::method::check_bits(&args.bits)
        .map_err(|e| super::out::usage(format!("--bits: {e}")))?;
    super::out::distinct_outputs(
        &[
            ("-o", Some(&args.output)),
            ("--checkpoint", args.checkpoint.as_deref()),
        ],
        &[
            ("--ckpt", Some(&args.ckpt)),
            ("--model", Some(Path::new(&args.model))),
        ],
    )?;
    let resume = resume_state(args.resume, args.checkpoint.as_deref())?;
    // Before any training: a run must not end by failing to write its results.
    limpq_io::files::check_writable(&args.output)?;
    if let Some(p) = &args.checkpoint {
        limpq_io::files::check_writable(p)?;
    }
    let init = super::ckpt::load_input(&args.ckpt)?;
    let data = args.run.data_name(Some(&init));
    let model = limpq_trainer::model::Model::resolve_for_data(&args.model, &data)?;
    // Before the data and the GPU (the joint run checks it too).
    limpq_trainer::train::check_checkpoint_model(&init, &model, &init.describe())?;
    let (train_ds, test_ds) = args.run.splits(&data, model.input, Some(&init))?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    eprintln!(
        "joint indicator training of {} at bits {:?} on {} ({} train / {} test images) on {} ({})",
        model.name,
        args.bits,
        train_ds.kind.name(),
        train_ds.len(),
        test_ds.len(),
        gpu.summary.name,
        gpu.summary.backend
    );
    let mut meta = vec![
        ("data".to_string(), train_ds.kind.name().to_string()),
        ("init".to_string(), args.ckpt.display().to_string()),
    ];
    meta.extend(args.run.subset_meta(&train_ds));
    super::run_args::check_resume_data(resume.as_deref(), &meta).inspect_err(|_| {
        if let Some(p) = &args.checkpoint {
            super::ckpt::note_kept_run(p);
        }
    })?;
    let cfg = JointConfig {
        bits: args.bits.clone(),
        run: RunConfig {
            meta,
            checkpoint: args.checkpoint.clone(),
            stop: stop_on_ctrl_c()?,
            resume,
            ..args.run.config(JointConfig::default().run)?
        },
        ..JointConfig::default()
    };
    let progress = Progress::new("joint")?;
    let result = joint_train_full(&gpu, &model, &init, train_ds, test_ds, &cfg, &mut |e| {
        progress.event(e)
    });
    progress.finish();
    let out = result.map_err(|e| {
        if let (false, Some(p)) = (matches!(e, MethodError::Stopped { .. }), &args.checkpoint) {
            super::ckpt::note_kept_run(p);
        }
        stopped_error(
            e,
            "give --checkpoint STATE to keep the state at a stop and continue with --resume",
        )
    })?;
    if let Some(w) = out.clamped_warning() {
        eprintln!("{w}");
    }
    if !out.non_monotone.is_empty() {
        eprintln!(
            "warning: {} indicator pairs are not monotone in bits (listed in the file's meta); \
             `limpq solve` forbids the lower bit-width there unless --allow-non-monotone",
            out.non_monotone.len()
        );
    }
    match &out.drift {
        Some(d) if d.is_small() => eprintln!(
            "note: the step sizes moved from their LSQ init {d}: the indicators are still \
             mostly the init rule (weight spread, activation size), not learned importance; \
             more --epochs move them further, the activation steps slowest (docs/METHOD.md)"
        ),
        Some(d) => eprintln!("the step sizes moved from their LSQ init {d}"),
        None => {}
    }
    // In a data-parallel run every rank holds the same result and rank 0 alone writes it.
    if limpq_trainer::dist::Dist::global().is_root() {
        limpq_io::documents::write_indicators(&args.output, &out.indicators)?;
        if let Some(p) = &args.checkpoint {
            out.checkpoint.save(p)?;
        }
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
