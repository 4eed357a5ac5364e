//! `limpq finetune`: quantization-aware training of a solved policy from a full-precision
//! checkpoint; writes a quantized checkpoint that carries its policy (`limpq eval` reads it).
use std::path::PathBuf;

use limpq_solver::IndicatorSet;
use limpq_trainer::gpu::{Gpu, GpuOptions};
use limpq_trainer::method::{finetune, FinetuneConfig, MethodError, PolicyCost, RunConfig};

use super::indicators::{resume_state, stopped_error};
use super::progress::stop_on_ctrl_c;
use super::progress::Progress;
use limpq_io::documents::{read_indicators, read_policy};

use super::run_args::RunArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Full-precision checkpoint written by `limpq train` (its model is used; `--init` is
    /// an older spelling).
    #[arg(long, alias = "init")]
    pub ckpt: PathBuf,
    /// Policy written by `limpq solve` (RON, or JSON by extension).
    #[arg(long)]
    pub policy: PathBuf,
    /// Indicator file of the joint run, read with --steps-from-indicators.
    #[arg(long)]
    pub indicators: Option<PathBuf>,
    /// Start the step sizes from --indicators at the policy's bits instead of the LSQ init
    /// rule on the first training batch (the default, as the reference re-initialises them).
    #[arg(long, requires = "indicators")]
    pub steps_from_indicators: bool,
    /// Recalibrate the BN statistics on this many training images before every
    /// evaluation, as the reference does, taken in whole batches of --eval-batch (rounded
    /// up; 0: never; at most the training split).
    #[arg(long, default_value_t = limpq_trainer::method::RECALIBRATION_IMAGES)]
    pub bn_recalibration: usize,
    #[command(flatten)]
    pub run: RunArgs,
    /// Quantized checkpoint to write (rewritten after every epoch, and at Ctrl-C with the
    /// exact position).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Continue the run recorded in --output (stopped with Ctrl-C, or cut short: from its
    /// last epoch end) exactly where it stopped; the other settings must be the same.
    #[arg(long)]
    pub resume: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.run.check()?;
    super::out::distinct_outputs(
        &[("-o", Some(&args.output))],
        &[
            ("--ckpt", Some(&args.ckpt)),
            ("--policy", Some(&args.policy)),
            ("--indicators", args.indicators.as_deref()),
        ],
    )?;
    let resume = resume_state(args.resume, Some(&args.output))?;
    // Before any training: a run must not end by failing to write its checkpoint.
    limpq_io::files::check_writable(&args.output)?;
    let init = super::ckpt::load_input(&args.ckpt)?;
    // Before the data and the GPU: the library refuses it too, later.
    limpq_trainer::method::check_not_joint_state(&init)?;
    let model = init.model.clone();
    let policy = read_policy(&args.policy)?;
    if policy.model != model.name {
        anyhow::bail!(
            "{} is a policy for model '{}', {} holds '{}'",
            args.policy.display(),
            policy.model,
            args.ckpt.display(),
            model.name
        );
    }
    // Before the data and the GPU: every layer's bits, named with the file (the library
    // refuses it too, later, without the file).
    let spec = limpq_trainer::engine::QuantSpec::policy(&model, &policy)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.policy.display()))?;
    // A layer the model fixes (stem, classifier) at other bits than its fixed ones: obeyed,
    // as the policy says, and said, since the search never moves them.
    let fixed = model.quantizable_layers()?;
    for (l, (name, v)) in fixed.iter().zip(&spec.layers) {
        let (w, a) = v[0];
        if l.fixed && l.name == *name && (w, a) != limpq_trainer::model::FIXED_BITS {
            let (fw, fa) = limpq_trainer::model::FIXED_BITS;
            eprintln!(
                "note: {} puts layer '{name}' at W{w}A{a}; the model fixes it at W{fw}A{fa} \
                 (the search never moves it)",
                args.policy.display()
            );
        }
    }
    // A checkpoint finetuned at other bits: the layers whose bits change start their step
    // sizes afresh (the library's rule); say which.
    let changes = limpq_trainer::method::policy_changes(&init, &policy)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.ckpt.display()))?;
    if let Some(limpq_trainer::method::BitsChange {
        layer: name,
        was: (sw, sa),
        now: (w, a),
    }) = changes.first()
    {
        eprintln!(
            "note: {} was finetuned at other bits in {} layer(s) (first '{name}': W{sw}A{sa}, \
             now W{w}A{a}); their step sizes start afresh from the LSQ init",
            args.ckpt.display(),
            changes.len()
        );
    }
    let indicators: Option<IndicatorSet> = args
        .indicators
        .as_deref()
        .map(read_indicators)
        .transpose()?;
    if let (Some(p), false) = (&args.indicators, args.steps_from_indicators) {
        // Not refused: runs recorded under docs/results give it this way.
        eprintln!(
            "warning: --indicators {} is read only with --steps-from-indicators; the step \
             sizes start from the LSQ init rule",
            p.display()
        );
    }
    if let (Some(ind), Some(p)) = (&indicators, &args.indicators) {
        // Before the GPU and the data: the method refuses it too, later.
        if args.steps_from_indicators && ind.is_measured_sensitivity() {
            anyhow::bail!(
                "{}: measured sensitivity (`limpq sensitivity`), loss increases, not step \
                 sizes: --steps-from-indicators needs the joint run's indicators (`limpq \
                 indicators`)",
                p.display()
            );
        }
        if args.steps_from_indicators {
            limpq_trainer::method::check_steps_from_indicators(&model, &policy, ind)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        }
    }
    let data = args.run.data_name(Some(&init));
    let (train_ds, test_ds) = args.run.splits(&data, model.input, Some(&init))?;
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    eprintln!(
        "finetuning {} at {} on {} ({} train / {} test images) on {} ({})",
        model.name,
        args.policy.display(),
        train_ds.kind.name(),
        train_ds.len(),
        test_ds.len(),
        gpu.summary.name,
        gpu.summary.backend
    );
    let mut meta = vec![
        ("data".into(), train_ds.kind.name().to_string()),
        ("init".into(), args.ckpt.display().to_string()),
    ];
    meta.extend(args.run.subset_meta(&train_ds));
    super::run_args::check_resume_data(resume.as_deref(), &meta).inspect_err(|_| {
        super::ckpt::note_kept_run(&args.output);
    })?;
    let cfg = FinetuneConfig {
        run: RunConfig {
            meta,
            checkpoint: Some(args.output.clone()),
            stop: stop_on_ctrl_c()?,
            resume,
            ..args.run.config(FinetuneConfig::default().run)?
        },
        steps_from_indicators: args.steps_from_indicators,
        bn_recalibration: args.bn_recalibration,
    };
    let progress = Progress::new("finetune")?;
    let result = finetune(
        &gpu,
        &model,
        &init,
        &policy,
        indicators.as_ref(),
        train_ds,
        test_ds,
        &cfg,
        &mut |e| progress.event(e),
    );
    progress.finish();
    let ft = result.map_err(|e| {
        if !matches!(e, MethodError::Stopped { .. }) {
            super::ckpt::note_kept_run(&args.output);
        }
        stopped_error(e, "nothing was saved")
    })?;
    // In a data-parallel run every rank holds the same result and rank 0 alone writes it.
    if limpq_trainer::dist::Dist::global().is_root() {
        ft.checkpoint.save(&args.output)?;
    }
    crate::outln!(
        "quantized test accuracy {:.2}%, loss {:.4}",
        ft.test_accuracy * 100.0,
        ft.test_loss
    )?;
    crate::outln!("{}", PolicyCost::of(&model, &policy)?.line())?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
