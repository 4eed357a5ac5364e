//! `limpq devices`: the adapters wgpu sees, and the one training would use; the list is
//! `limpq_trainer::gpu::AdapterList`.
use limpq_trainer::gpu::{AdapterList, GpuOptions};

use super::out::OutputFormat;

#[derive(clap::Args)]
pub struct Args {
    /// Search only these backends (comma list: vulkan, metal, dx12, gl); default WGPU_BACKEND,
    /// else Vulkan/Metal/DX12, and GL only when they offer no adapter.
    #[arg(long)]
    backend: Option<String>,
    /// Choose among adapters whose name contains this (case-insensitive); default
    /// WGPU_ADAPTER_NAME.
    #[arg(long)]
    adapter: Option<String>,
    /// `table`: a row per adapter; `json` / `ron`: every adapter's name, type, backend,
    /// driver, limits and features, and the index of the chosen one.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut opts = GpuOptions::from_env();
    if let Some(b) = &args.backend {
        opts = opts.with_backend_list(b);
    }
    if let Some(a) = &args.adapter {
        opts = opts.with_adapter_name(a);
    }
    let list = AdapterList::new(&opts);
    if list.adapters.is_empty() {
        anyhow::bail!(
            "wgpu sees no adapter; install a Vulkan driver (Mesa lavapipe: mesa-vulkan-drivers) \
             or check WGPU_BACKEND"
        );
    }
    let why_none = match args
        .adapter
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
    {
        Some(n) => format!(": no name contains {n:?} (--adapter / WGPU_ADAPTER_NAME)"),
        None => String::new(),
    };
    args.format.print(&list, || list.to_text(&why_none))
}
