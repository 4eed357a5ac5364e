//! `limpq devices`: the adapters wgpu sees, and the one training would use.
use limpq_trainer::gpu::{list_adapters, GpuOptions};

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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut opts = GpuOptions::from_env();
    if let Some(b) = &args.backend {
        opts = opts.with_backend_list(b);
    }
    if let Some(a) = &args.adapter {
        opts = opts.with_adapter_name(a);
    }
    let (adapters, chosen) = list_adapters(&opts);
    if adapters.is_empty() {
        anyhow::bail!(
            "wgpu sees no adapter; install a Vulkan driver (Mesa lavapipe: mesa-vulkan-drivers) \
             or check WGPU_BACKEND"
        );
    }
    let mib = |b: u64| format!("{}", b >> 20);
    let header = [
        "",
        "#",
        "name",
        "type",
        "backend",
        "driver",
        "storage MiB",
        "wg/dim",
        "inv/wg",
        "features",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (i, a) in adapters.iter().enumerate() {
        let driver = if a.driver_info.is_empty() {
            a.driver.clone()
        } else {
            format!("{} {}", a.driver, a.driver_info)
        };
        rows.push(vec![
            if chosen == Some(i) { "*" } else { "" }.to_string(),
            i.to_string(),
            a.name.clone(),
            a.device_type.clone(),
            a.backend.clone(),
            driver,
            mib(a.max_storage_buffer_binding_size),
            a.max_compute_workgroups_per_dimension.to_string(),
            a.max_compute_invocations_per_workgroup.to_string(),
            if a.features.is_empty() {
                "-".to_string()
            } else {
                a.features.join(",")
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    match chosen {
        Some(i) => println!(
            "\n* chosen: {} ({}, {})",
            adapters[i].name, adapters[i].device_type, adapters[i].backend
        ),
        None => println!("\nno adapter qualifies{}", opts_name_note(&args)),
    }
    Ok(())
}

fn opts_name_note(args: &Args) -> String {
    match args
        .adapter
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
    {
        Some(n) => format!(": no name contains {n:?} (--adapter / WGPU_ADAPTER_NAME)"),
        None => String::new(),
    }
}
