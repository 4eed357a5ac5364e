//! `limpq export`: a finetuned checkpoint as an ONNX QDQ model (`--onnx`), or a policy's
//! per-layer bits for a runtime (`--format ort|tensorrt|json|csv`). The work is
//! `limpq_trainer::method::export` and `limpq_trainer::method::runtime`; docs/DEPLOY.md.
use std::path::{Path, PathBuf};

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::method::checkpoint_policy;
use limpq_trainer::method::export::export_onnx;
use limpq_trainer::method::runtime::{runtime_config, RuntimeFormat};

use super::out::{print, usage};

/// The per-layer formats of `--format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// ONNX Runtime's TensorQuantOverrides (JSON) for its static quantizer; needs --onnx-model.
    Ort,
    /// trtexec flags: --layerPrecisions=LAYER:int8,... (TensorRT runs ≤ 8 bits as int8).
    Tensorrt,
    /// A per-layer table (bits, runtime types, ONNX names) as JSON.
    Json,
    /// The same table as CSV.
    Csv,
}

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint written by `limpq finetune` (for --onnx; with --format its stored policy
    /// is used), or a policy file written by `limpq solve` (for --format).
    pub input: PathBuf,
    /// Write the checkpoint as an ONNX QDQ model to this file.
    #[arg(long, conflicts_with = "format")]
    pub onnx: Option<PathBuf>,
    /// Write a full-precision (or finetuned) checkpoint's float weights as safetensors with
    /// PyTorch's parameter names, for `load_state_dict` (docs/IMPORT.md).
    #[arg(long, conflicts_with_all = ["format", "onnx"])]
    pub safetensors: Option<PathBuf>,
    /// The policy of --onnx (default: the policy the finetuned checkpoint stores).
    #[arg(long, requires = "onnx")]
    pub policy: Option<PathBuf>,
    /// Write the policy's per-layer bits in this runtime's form.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The float ONNX model the runtime will read: its node and tensor names are used
    /// (required by --format ort; optional for the others).
    #[arg(long, requires = "format")]
    pub onnx_model: Option<PathBuf>,
    /// Write the --format output to this file (default: standard output).
    #[arg(short, long, requires = "format")]
    pub output: Option<PathBuf>,
}

/// Largest ONNX model read for its names.
const MAX_ONNX: u64 = 4 << 30;

/// The policy a finetuned checkpoint stores; `instead` says what else the command takes.
fn stored_policy(
    ckpt: &Checkpoint,
    path: &Path,
    instead: &str,
) -> anyhow::Result<limpq_solver::Policy> {
    checkpoint_policy(ckpt)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: the checkpoint holds no policy (a full-precision checkpoint?): export \
                 the checkpoint of `limpq finetune`, or {instead}",
                path.display()
            )
        })
}

/// Flags of one mode given in another. clap cannot say it: a `requires` is dropped when
/// what it requires conflicts with a flag given (`--policy` requires `--onnx`, which
/// conflicts with `--format`), so `export p.ron --format csv --policy q.ron` ran and
/// ignored `--policy`.
fn check_modes(args: &Args) -> anyhow::Result<()> {
    let stray = |flag: &str, given: bool, mode: &str| {
        if given {
            Err(usage(format!("{flag} is {mode}: leave it out here")))
        } else {
            Ok(())
        }
    };
    if args.onnx.is_none() {
        stray(
            "--policy",
            args.policy.is_some(),
            "--onnx's (the policy a model is exported at; with --format the input is the \
             policy)",
        )?;
    }
    if args.format.is_none() {
        stray(
            "-o",
            args.output.is_some(),
            "--format's output file (--onnx and --safetensors name their own)",
        )?;
        stray(
            "--onnx-model",
            args.onnx_model.is_some(),
            "--format's (the float model whose names the per-layer bits use)",
        )?;
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    check_modes(&args)?;
    super::out::distinct_outputs(
        &[
            ("--onnx", args.onnx.as_deref()),
            ("--safetensors", args.safetensors.as_deref()),
            ("-o", args.output.as_deref()),
        ],
        &[
            ("the input", Some(&args.input)),
            ("--policy", args.policy.as_deref()),
            ("--onnx-model", args.onnx_model.as_deref()),
        ],
    )?;
    if let Some(out) = &args.safetensors {
        return export_weights(&args.input, out);
    }
    match (&args.onnx, args.format) {
        (Some(out), None) => export_model(&args, out),
        (None, Some(format)) => export_format(&args, format),
        _ => Err(usage(
            "give --onnx FILE (a finetuned checkpoint as ONNX QDQ), --safetensors FILE (its \
             float weights for PyTorch) or --format ort|tensorrt|json|csv (a policy's \
             per-layer bits)",
        )),
    }
}

fn export_weights(input: &Path, out: &Path) -> anyhow::Result<()> {
    let ckpt = super::ckpt::load_input(input)?;
    let bytes = limpq_trainer::weights::export_safetensors(&ckpt)
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    limpq_io::files::write_atomic(out, &bytes)?;
    eprintln!(
        "wrote {}: the float weights of '{}' ({} bytes)",
        out.display(),
        ckpt.model.name,
        bytes.len()
    );
    Ok(())
}

fn export_model(args: &Args, out: &Path) -> anyhow::Result<()> {
    let ckpt = super::ckpt::load_input(&args.input)?;
    let policy = match &args.policy {
        Some(p) => limpq_io::documents::read_policy(p)?,
        None => stored_policy(&ckpt, &args.input, "give --policy")?,
    };
    let name = args.input.display().to_string();
    // Some of the exporter's errors name the checkpoint already (it knows where it was
    // loaded from); the others get its name here, once.
    let export = export_onnx(&ckpt, &policy).map_err(|e| {
        let e = e.to_string();
        match e.starts_with(&format!("{name}:")) {
            true => anyhow::anyhow!(e),
            false => anyhow::anyhow!("{name}: {e}"),
        }
    })?;
    let bytes = limpq_onnx::write_model(&export.model);
    limpq_io::files::write_atomic(out, &bytes)?;
    let mut text = format!(
        "{}: {} as ONNX QDQ (opset {}, {} bytes) from {name}\n",
        out.display(),
        ckpt.model.name,
        limpq_trainer::method::export::ONNX_OPSET,
        bytes.len()
    );
    for l in &export.layers {
        text += &format!(
            "  {:<24} W{}A{}  weights {} codes, step {:.6}; input {} codes, step {:.6}{}\n",
            l.name,
            l.weight_bits,
            l.act_bits,
            l.weight_container,
            l.weight_step,
            l.act_container,
            l.act_step,
            if l.fixed { " (fixed)" } else { "" }
        );
    }
    print(&text)
}

fn export_format(args: &Args, format: Format) -> anyhow::Result<()> {
    let policy = if Checkpoint::looks_like_one(&args.input)? {
        let ckpt = super::ckpt::load_input(&args.input)?;
        stored_policy(
            &ckpt,
            &args.input,
            "give a policy file (`limpq solve -o`) as the input",
        )?
    } else {
        limpq_io::documents::read_policy(&args.input)?
    };
    let model = match &args.onnx_model {
        Some(p) => {
            let bytes = limpq_io::files::read_regular(p, MAX_ONNX)?;
            Some(
                limpq_onnx::read_model(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let format = match format {
        Format::Ort => RuntimeFormat::Ort,
        Format::Tensorrt => RuntimeFormat::TensorRt,
        Format::Json => RuntimeFormat::Json,
        Format::Csv => RuntimeFormat::Csv,
    };
    // A model the user brought (not one of limpq's built-ins) has its layers named by the
    // importer: they are the node names of limpq's own `--onnx` export, not of the float
    // model the user started from, where TensorRT would match none of them.
    let builtin = limpq_trainer::model::BUILTIN_NAMES.contains(&policy.model.as_str());
    // Bits the trainer cannot run are refused as finetune refuses them (a 1-bit layer was
    // written as int8). The layers themselves are not checked against a built-in model of
    // the policy's name: an imported model may carry one (`import-onnx resnet18.onnx`).
    limpq_trainer::engine::QuantSpec::check_policy_bits(&policy)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    if format == RuntimeFormat::TensorRt && model.is_none() && !builtin {
        eprintln!(
            "note: the layer names are the policy's, which are the node names of `limpq \
             export --onnx`'s model; for the float ONNX model '{}' was imported from, give \
             it with --onnx-model and its node names are used",
            policy.model
        );
    }
    let text = runtime_config(&policy, format, model.as_ref()).map_err(|e| {
        let from = args
            .onnx_model
            .as_ref()
            .map_or_else(String::new, |p| format!(" and {}", p.display()));
        anyhow::anyhow!("{}{from}: {e}", args.input.display())
    })?;
    match &args.output {
        Some(p) => {
            limpq_io::files::write_atomic(p, text.as_bytes())?;
            Ok(())
        }
        None => print(&text),
    }
}
