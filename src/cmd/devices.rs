//! `limpq devices`: every adapter wgpu sees on every backend, numbered as `--adapter N`
//! counts them, and the one a command would open; the list is
//! `limpq_trainer::gpu::AdapterList`.
use limpq_trainer::gpu::{AdapterList, Gpu, GpuOptions};

use super::out::{usage, OutputFormat};

#[derive(clap::Args)]
pub struct Args {
    /// List only these backends (comma list: vulkan, metal, dx12, gl); default WGPU_BACKEND,
    /// else all of them.
    #[arg(long)]
    backend: Option<String>,
    /// `table`: a row per adapter; `json` / `ron`: every adapter's name, type, backend,
    /// driver, limits and features, and the index of the chosen one.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Also open the chosen adapter (create its device, as a training command would) and
    /// print `opened: NAME (BACKEND, TYPE)` and the optional features it was given.
    #[arg(long)]
    open: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut opts = GpuOptions::from_env();
    if let Some(b) = &args.backend {
        opts = opts
            .with_backend_list(b)
            .map_err(|e| usage(format!("--backend: {e}")))?;
    }
    let (list, why) = AdapterList::new(&opts);
    if let (true, Some(b)) = (list.adapters.is_empty(), &args.backend) {
        anyhow::bail!(
            "wgpu sees no adapter on --backend {b} (Metal is macOS's, DX12 Windows's, Vulkan \
             and GL need their drivers); `limpq devices` without --backend lists every adapter"
        );
    }
    if list.adapters.is_empty() {
        // A reason the options give (a WGPU_BACKEND naming no backend) comes first.
        if let Some(e) = why {
            return Err(e.into());
        }
        anyhow::bail!(
            "wgpu sees no adapter; install a Vulkan driver (Mesa lavapipe: mesa-vulkan-drivers) \
             or check WGPU_BACKEND"
        );
    }
    let why_none = why.map(|e| format!(": {e}")).unwrap_or_default();
    // The table says that none qualifies; the error below says why, once (on stderr, so
    // it is seen when the table goes to a file).
    args.format.print(&list, || list.to_text())?;
    if list.chosen.is_none() {
        anyhow::bail!("no adapter qualifies{why_none}");
    }
    if args.open {
        let gpu = Gpu::new(&opts)?;
        let caps = gpu.caps();
        crate::outln!(
            "opened: {} ({}, {}); shader-f16={} subgroups-of-8={} cooperative-matrix={}",
            gpu.summary.name,
            gpu.summary.backend,
            gpu.summary.device_type,
            caps.shader_f16,
            caps.subgroup8,
            caps.coop_f16
        )?;
    }
    Ok(())
}
