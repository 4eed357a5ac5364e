//! The GPU context: adapter selection, device creation and error capture.
//!
//! [`Gpu::new`] picks one adapter among those wgpu enumerates:
//! - `WGPU_BACKEND` (e.g. `vulkan`, `metal,dx12`) restricts the backends searched; without
//!   it Vulkan/Metal/DX12 are searched first and GL only when they offer no adapter to
//!   choose (GL's EGL probing is slow and prints errors on a headless machine);
//! - `WGPU_ADAPTER_NAME` keeps only adapters whose name contains it (case-insensitive);
//! - among the rest a discrete GPU wins over an integrated one, then virtual/other, and a
//!   software adapter (Mesa lavapipe "llvmpipe") is the last resort.
//!
//! No adapter is an error ([`GpuError::NoAdapter`]), never a panic. The device is requested with
//! the adapter's own limits (storage binding size, workgroup counts) so large models fit.
//!
//! Optional features, each behind a check with an f32 path as the fallback: the device is
//! requested with `SHADER_F16` when the adapter has it ([`Gpu::shader_f16`]: f16 storage
//! for the f16 GEMM), and with `EXPERIMENTAL_COOPERATIVE_MATRIX` plus `SUBGROUP` when the
//! adapter also lists a 16×16×16 f16·f16→f32 configuration and its subgroups are exactly 32
//! wide ([`Gpu::coop_f16`]: tensor-core GEMM). `LIMPQ_NO_F16=1` / `LIMPQ_NO_COOP=1` turn
//! them off; a device request refused with them is retried without them. A CPU adapter with
//! subgroups of exactly 8 (lavapipe on x86-64) is created with `SUBGROUP` ([`Gpu::subgroup8`]:
//! the subgroup-broadcast conv kernels); `LIMPQ_NO_SUBGROUP=1` turns that off.
//!
//! The context states facts about the adapter and the device it made; it chooses no
//! algorithm. Which kernel an op runs is the op's business (e.g. `kernels::conv::ConvPolicy`
//! reads these facts).
//!
//! wgpu reports validation errors asynchronously; a default handler would panic. The context
//! installs a handler that records them and a device-lost callback, and [`Gpu::check`] turns
//! either into a [`GpuError`]. [`Gpu::scoped`] wraps a closure in error scopes for exact blame.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::pipeline::Pipeline;

/// What went wrong with the GPU. Every variant carries a message meant for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GpuError {
    /// wgpu found no adapter at all on the searched backends.
    NoAdapter { backends: String },
    /// `WGPU_ADAPTER_NAME` (or [`GpuOptions::adapter_name`]) matched none of the adapters.
    NoMatchingAdapter { wanted: String, seen: Vec<String> },
    /// `--adapter` / `LIMPQ_ADAPTER` ([`AdapterPick`]) matched none of the adapters; `seen`
    /// lists them as `limpq devices` numbers them.
    NoSuchAdapter {
        wanted: String,
        source: String,
        seen: Vec<String>,
    },
    /// The adapter refused the device request.
    RequestDevice(String),
    /// The device was lost (driver reset, out of memory on some drivers, destroyed).
    DeviceLost(String),
    /// A validation error: a bug in our kernels or their bindings.
    Validation(String),
    /// The GPU ran out of memory.
    OutOfMemory(String),
    /// Internal wgpu / driver error.
    Internal(String),
    /// Mapping a buffer for readback failed, or polling the device failed.
    Readback(String),
    /// A kernel was given tensors or a shape it cannot take (names the kernel and the field).
    Shape(String),
    /// The kernel needs a device feature this device was not created with (names both).
    Unsupported(String),
    /// An option or environment variable holds a value the trainer does not accept (names
    /// it and the allowed values).
    InvalidOption(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoAdapter { backends } => write!(
                f,
                "no GPU adapter found (backends searched: {backends}); install a Vulkan driver \
                 (e.g. Mesa lavapipe: mesa-vulkan-drivers) or set WGPU_BACKEND"
            ),
            GpuError::NoMatchingAdapter { wanted, seen } => write!(
                f,
                "no adapter name contains {wanted:?} (WGPU_ADAPTER_NAME); adapters seen: {}",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ),
            GpuError::NoSuchAdapter {
                wanted,
                source,
                seen,
            } => write!(
                f,
                "no adapter matches {wanted:?} ({source}: an index, a name or part of one, a \
                 backend, or BACKEND:INDEX / BACKEND:NAME); adapters (`limpq devices`): {}",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join("; ")
                }
            ),
            GpuError::RequestDevice(m) => write!(f, "device request failed: {m}"),
            GpuError::DeviceLost(m) => write!(f, "GPU device lost: {m}"),
            GpuError::Validation(m) => write!(f, "GPU validation error: {m}"),
            GpuError::OutOfMemory(m) => write!(f, "GPU out of memory: {m}"),
            GpuError::Internal(m) => write!(f, "GPU internal error: {m}"),
            GpuError::Readback(m) => write!(f, "GPU readback failed: {m}"),
            GpuError::InvalidOption(m) => f.write_str(m),
            GpuError::Shape(m) => write!(f, "bad kernel arguments: {m}"),
            GpuError::Unsupported(m) => write!(f, "not supported by this GPU device: {m}"),
        }
    }
}

impl std::error::Error for GpuError {}

impl From<wgpu::Error> for GpuError {
    fn from(e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
            wgpu::Error::Validation { description, .. } => GpuError::Validation(description),
            wgpu::Error::Internal { description, .. } => GpuError::Internal(description),
        }
    }
}

/// How to choose the adapter. `Default` means: whatever the environment says.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GpuOptions {
    /// Backends to search; `None` reads `WGPU_BACKEND`, else Vulkan/Metal/DX12 first and all
    /// backends only when they offer no adapter to choose.
    pub backends: Option<wgpu::Backends>,
    /// Keep only adapters whose name contains this (case-insensitive); `None` reads
    /// `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// One adapter by index, name or backend ([`AdapterPick`]); `None` reads
    /// `LIMPQ_ADAPTER`. When set, every backend is searched (GL included) and the adapter
    /// is picked from the list `limpq devices` shows.
    pub adapter: Option<AdapterPick>,
}

/// Environment variable naming the adapter every command opens (`--adapter` sets it).
pub const ADAPTER_ENV: &str = "LIMPQ_ADAPTER";

/// Which adapter to open, as `--adapter` / `LIMPQ_ADAPTER` write it: `N` (the index
/// `limpq devices` shows), `NAME` (case-insensitive part of the adapter's name), a backend
/// (`vulkan`, `metal`, `dx12`, `gl`: the preferred adapter of that backend), or
/// `BACKEND:N` / `BACKEND:NAME` (the index counts that backend's adapters only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterPick {
    /// The text as given, for messages.
    pub text: String,
    pub backend: Option<wgpu::Backend>,
    pub which: Which,
}

/// The adapter part of an [`AdapterPick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The preferred one (discrete first, software last, GL after the others).
    Preferred,
    /// This position in the list.
    Index(usize),
    /// The preferred one whose name contains this (lower case).
    Name(String),
}

fn parse_backend(s: &str) -> Option<wgpu::Backend> {
    match s.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Some(wgpu::Backend::Vulkan),
        "metal" | "mtl" => Some(wgpu::Backend::Metal),
        "dx12" | "d3d12" => Some(wgpu::Backend::Dx12),
        "gl" | "gles" | "opengl" => Some(wgpu::Backend::Gl),
        _ => None,
    }
}

impl std::str::FromStr for AdapterPick {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if text.is_empty() {
            return Err(
                "empty adapter choice (give an index, a name, a backend, or \
                        BACKEND:INDEX / BACKEND:NAME)"
                    .into(),
            );
        }
        let (backend, rest) = match text.split_once(':') {
            Some((b, rest)) => match parse_backend(b) {
                Some(b) => (Some(b), rest.trim()),
                None => {
                    return Err(format!(
                        "{text:?}: unknown backend {b:?} before ':' (allowed: vulkan, metal, \
                         dx12, gl)"
                    ))
                }
            },
            None => match parse_backend(text) {
                Some(b) => (Some(b), ""),
                None => (None, text),
            },
        };
        let which = if rest.is_empty() {
            Which::Preferred
        } else if rest.bytes().all(|c| c.is_ascii_digit()) {
            Which::Index(
                rest.parse()
                    .map_err(|_| format!("{text:?}: adapter index {rest} is too large"))?,
            )
        } else {
            Which::Name(rest.to_lowercase())
        };
        Ok(AdapterPick {
            text: text.to_string(),
            backend,
            which,
        })
    }
}

/// A line naming adapter `i` of a list, for errors.
fn adapter_line(i: usize, info: &wgpu::AdapterInfo) -> String {
    format!(
        "{i}: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    )
}

/// Index into `infos` (the list `limpq devices` shows) of the adapter `pick` names;
/// `source` says where the choice came from, for the error.
pub fn pick_adapter(
    infos: &[wgpu::AdapterInfo],
    pick: &AdapterPick,
    source: &str,
) -> Result<usize, GpuError> {
    let candidates: Vec<usize> = (0..infos.len())
        .filter(|&i| pick.backend.is_none_or(|b| infos[i].backend == b))
        .collect();
    let preferred = |among: &[usize]| {
        among.iter().copied().min_by_key(|&i| {
            (
                type_rank(infos[i].device_type),
                backend_rank(infos[i].backend),
                i,
            )
        })
    };
    let found = match &pick.which {
        Which::Preferred => preferred(&candidates),
        Which::Index(n) => candidates.get(*n).copied(),
        Which::Name(name) => {
            let named: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| infos[i].name.to_lowercase().contains(name.as_str()))
                .collect();
            preferred(&named)
        }
    };
    found.ok_or_else(|| GpuError::NoSuchAdapter {
        wanted: pick.text.clone(),
        source: source.to_string(),
        seen: infos
            .iter()
            .enumerate()
            .map(|(i, a)| adapter_line(i, a))
            .collect(),
    })
}

impl GpuOptions {
    /// Options taken from `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` (the same as `Default`).
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Search only these backends, a comma list as in `WGPU_BACKEND` (`vulkan`, `metal`,
    /// `dx12`, `gl`, case-insensitive); overrides the environment. An unknown name is an
    /// error, where wgpu's own reading of the list skips it with a log line and, with no
    /// name left, searches nothing.
    pub fn with_backend_list(mut self, list: &str) -> Result<Self, String> {
        let mut backends = wgpu::Backends::empty();
        for name in list.split(',') {
            let b = parse_backend(name).ok_or_else(|| {
                format!(
                    "unknown backend {:?} in {list:?} (allowed: vulkan, metal, dx12, gl)",
                    name.trim()
                )
            })?;
            backends |= b.into();
        }
        self.backends = Some(backends);
        Ok(self)
    }

    /// Keep only adapters whose name contains `name`; overrides `WGPU_ADAPTER_NAME`.
    pub fn with_adapter_name(mut self, name: &str) -> Self {
        self.adapter_name = Some(name.to_string());
        self
    }

    /// Open the adapter `pick` names; overrides `LIMPQ_ADAPTER`.
    pub fn with_adapter(mut self, pick: AdapterPick) -> Self {
        self.adapter = Some(pick);
        self
    }

    /// The adapter choice: the option, else `LIMPQ_ADAPTER` (empty: none), else the one
    /// [`set_rank_adapter`] stored, with where it came from; a value that does not parse is
    /// an error naming the variable.
    fn resolved_pick(&self) -> Result<Option<(AdapterPick, &'static str)>, GpuError> {
        if let Some(p) = self.given_pick()? {
            return Ok(Some(p));
        }
        Ok(RANK_ADAPTER
            .get()
            .map(|p| (p.clone(), "the node-local rank's adapter")))
    }

    /// The option, else `LIMPQ_ADAPTER`: an adapter the user named.
    fn given_pick(&self) -> Result<Option<(AdapterPick, &'static str)>, GpuError> {
        if self.backends.is_none() {
            check_backend_env()?;
        }
        if let Some(p) = &self.adapter {
            return Ok(Some((p.clone(), "--adapter")));
        }
        match std::env::var(ADAPTER_ENV) {
            Ok(v) if !v.trim().is_empty() => v
                .parse()
                .map(|p| Some((p, "--adapter / LIMPQ_ADAPTER")))
                .map_err(|e| GpuError::InvalidOption(format!("{ADAPTER_ENV}={v:?}: {e}"))),
            Err(std::env::VarError::NotUnicode(v)) => Err(GpuError::InvalidOption(format!(
                "{ADAPTER_ENV}={v:?}: not text; give an index, a name or a backend"
            ))),
            _ => Ok(None),
        }
    }

    fn resolved_name(&self) -> Option<String> {
        self.adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .filter(|s| !s.trim().is_empty())
    }
}

/// One adapter as `limpq devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    /// Subgroup sizes the adapter reports (min, max); meaningful with `subgroup`.
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Features of interest the adapter offers: `shader-f16`, `subgroup`,
    /// `cooperative-matrix`, `timestamp-query`. Not requested yet; noted for later kernels.
    pub features: Vec<&'static str>,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let l = adapter.limits();
        let f = adapter.features();
        let mut features = Vec::new();
        for (flag, name) in [
            (wgpu::Features::SHADER_F16, "shader-f16"),
            (wgpu::Features::SUBGROUP, "subgroup"),
            (
                wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
                "cooperative-matrix",
            ),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
        ] {
            if f.contains(flag) {
                features.push(name);
            }
        }
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            features,
        }
    }
}

/// Preference order: lower is better.
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// GL compute is the least capable backend; among adapters of one type prefer the others.
fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Gl => 1,
        _ => 0,
    }
}

/// Index of the adapter [`Gpu::new`] would take, given the name filter.
fn choose(adapters: &[wgpu::Adapter], name: Option<&str>) -> Result<usize, GpuError> {
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    choose_info(&infos, name)
}

fn choose_info(infos: &[wgpu::AdapterInfo], name: Option<&str>) -> Result<usize, GpuError> {
    let wanted = name.map(str::to_lowercase);
    infos
        .iter()
        .enumerate()
        .filter(|(_, info)| {
            // The noop backend is a stub that runs nothing; never choose it.
            info.backend != wgpu::Backend::Noop
                && wanted
                    .as_deref()
                    .is_none_or(|w| info.name.to_lowercase().contains(w))
        })
        .min_by_key(|(i, info)| (type_rank(info.device_type), backend_rank(info.backend), *i))
        .map(|(i, _)| i)
        .ok_or_else(|| match name {
            Some(w) => GpuError::NoMatchingAdapter {
                wanted: w.to_string(),
                seen: infos.iter().map(|a| a.name.clone()).collect(),
            },
            None => GpuError::NoAdapter {
                backends: String::new(),
            },
        })
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// `WGPU_BACKEND`, as wgpu reads it (a comma-separated list of backend names); unset or
/// blank, `None` (every backend), where wgpu took a blank value for no backend at all.
fn env_backends() -> Option<wgpu::Backends> {
    match std::env::var("WGPU_BACKEND") {
        Ok(v) if !v.trim().is_empty() => Some(wgpu::Backends::from_comma_list(&v)),
        _ => None,
    }
}

/// A `WGPU_BACKEND` that names no backend (a typo: `vulcan`), or is not text, is an error
/// naming it; wgpu took it for no backend, and the search then found no adapter.
fn check_backend_env() -> Result<(), GpuError> {
    let names = "vulkan, metal, dx12, gl, comma-separated";
    match std::env::var("WGPU_BACKEND") {
        Err(std::env::VarError::NotUnicode(v)) => Err(GpuError::InvalidOption(format!(
            "WGPU_BACKEND={v:?}: not text; give backend names ({names})"
        ))),
        Ok(v) if env_backends().is_some_and(|b| b.is_empty()) => Err(GpuError::InvalidOption(
            format!("WGPU_BACKEND={v:?} names no backend ({names})"),
        )),
        _ => Ok(()),
    }
}

/// The backend sets to search, in order: the explicit choice (the option, else
/// `WGPU_BACKEND`) alone; without one Vulkan/Metal/DX12 first and every backend only when
/// they offer nothing usable. GL is probed last because it is slow to start, weakest at
/// compute, and its EGL probing prints errors on a headless machine.
fn backend_attempts(opts: &GpuOptions) -> Vec<wgpu::Backends> {
    match opts.backends.or_else(env_backends) {
        Some(b) => vec![b],
        None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::all()],
    }
}

/// The adapters of the first backend set in [`backend_attempts`] where the name filter finds
/// one to choose, with the index of that one; else the last set's adapters and why none
/// qualifies.
fn search(opts: &GpuOptions) -> (Vec<wgpu::Adapter>, Result<usize, GpuError>) {
    match opts.resolved_pick() {
        Err(e) => return (Vec::new(), Err(e)),
        Ok(Some((pick, source))) => {
            let adapters = all_adapters(opts);
            let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
            let chosen = pick_adapter(&infos, &pick, source);
            return (adapters, chosen);
        }
        Ok(None) => {}
    }
    let name = opts.resolved_name();
    let mut last = (
        Vec::new(),
        Err(GpuError::NoAdapter {
            backends: "none".into(),
        }),
    );
    for backends in backend_attempts(opts) {
        let instance = new_instance(backends);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let chosen = match choose(&adapters, name.as_deref()) {
            Err(GpuError::NoAdapter { .. }) => Err(GpuError::NoAdapter {
                backends: format!("{backends:?}"),
            }),
            other => other,
        };
        if chosen.is_ok() {
            return (adapters, chosen);
        }
        last = (adapters, chosen);
    }
    last
}

/// Every adapter of every backend `opts` allows (the option, else `WGPU_BACKEND`, else all,
/// GL included), in wgpu's order, without the no-op stub: the list `limpq devices` numbers
/// and [`AdapterPick`] indexes.
fn all_adapters(opts: &GpuOptions) -> Vec<wgpu::Adapter> {
    let backends = opts
        .backends
        .or_else(env_backends)
        .unwrap_or(wgpu::Backends::all());
    let instance = new_instance(backends);
    pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Noop)
        .collect()
}

/// Every adapter wgpu sees under `opts` on every backend allowed (see `all_adapters`), and
/// the index of the one [`Gpu::new`] would choose, or why none qualifies.
pub fn list_adapters(opts: &GpuOptions) -> (Vec<AdapterSummary>, Result<usize, GpuError>) {
    if opts.backends.is_none() {
        if let Err(e) = check_backend_env() {
            return (Vec::new(), Err(e));
        }
    }
    let adapters = all_adapters(opts);
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let chosen = match opts.resolved_pick() {
        Err(e) => Err(e),
        Ok(Some((pick, source))) => pick_adapter(&infos, &pick, source),
        Ok(None) => default_choice(&infos, opts.resolved_name().as_deref()),
    };
    (adapters.iter().map(AdapterSummary::of).collect(), chosen)
}

/// The adapter of a process that no `--adapter` / `LIMPQ_ADAPTER` names
/// ([`set_rank_adapter`]).
static RANK_ADAPTER: std::sync::OnceLock<AdapterPick> = std::sync::OnceLock::new();

/// Makes `pick` the adapter of every GPU this process opens without `--adapter` /
/// `LIMPQ_ADAPTER` (a data-parallel job sets it once, from [`rank_adapter`]); only the
/// first call counts (returns whether it did).
pub fn set_rank_adapter(pick: AdapterPick) -> bool {
    RANK_ADAPTER.set(pick).is_ok()
}

/// Which of `kinds` (every adapter's backend and type, in the order `limpq devices` lists
/// them) node-local rank `local_rank` opens, `default` being the one a single process
/// would open: the adapters of the default's backend and type (the node's GPUs of that
/// kind, in list order, the default first) are dealt round the node's ranks,
/// `local_rank mod their count`. Rank 0 keeps the default; with one such adapter every
/// rank shares it.
pub fn rank_adapter_index(
    kinds: &[(wgpu::Backend, wgpu::DeviceType)],
    default: usize,
    local_rank: usize,
) -> usize {
    let Some(&kind) = kinds.get(default) else {
        return default;
    };
    let same: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i] == kind).collect();
    same.get(local_rank % same.len().max(1))
        .copied()
        .unwrap_or(default)
}

/// A data-parallel job's adapter for node-local rank `local_rank` under `opts`
/// ([`rank_adapter_index`]), as an [`AdapterPick`] (`BACKEND:N`, N counting that backend's
/// adapters) and a line naming it; `None` when `--adapter` / `LIMPQ_ADAPTER` names one
/// (the user's choice stands, for every rank).
pub fn rank_adapter(
    opts: &GpuOptions,
    local_rank: usize,
) -> Result<Option<(AdapterPick, String)>, GpuError> {
    if opts.given_pick()?.is_some() {
        return Ok(None);
    }
    let infos: Vec<wgpu::AdapterInfo> = all_adapters(opts).iter().map(|a| a.get_info()).collect();
    let default = default_choice(&infos, opts.resolved_name().as_deref())?;
    let kinds: Vec<_> = infos.iter().map(|i| (i.backend, i.device_type)).collect();
    let i = rank_adapter_index(&kinds, default, local_rank);
    let backend = infos[i].backend;
    let nth = infos[..i].iter().filter(|a| a.backend == backend).count();
    let name = match backend {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        // No other backend opens adapters here; index the whole list then.
        _ => "",
    };
    let text = if name.is_empty() {
        i.to_string()
    } else {
        format!("{name}:{nth}")
    };
    let pick = text.parse().map_err(GpuError::InvalidOption)?;
    Ok(Some((pick, adapter_line(i, &infos[i]))))
}

/// What [`Gpu::new`] chooses without an [`AdapterPick`] from a list of every backend's
/// adapters: among the non-GL ones first (it searches Vulkan/Metal/DX12 before GL unless a
/// backend was named), else among all.
fn default_choice(infos: &[wgpu::AdapterInfo], name: Option<&str>) -> Result<usize, GpuError> {
    let primary: Vec<usize> = (0..infos.len())
        .filter(|&i| infos[i].backend != wgpu::Backend::Gl)
        .collect();
    let sub: Vec<wgpu::AdapterInfo> = primary.iter().map(|&i| infos[i].clone()).collect();
    match choose_info(&sub, name) {
        Ok(j) => Ok(primary[j]),
        Err(_) => choose_info(infos, name),
    }
}

/// What `limpq devices` shows: every adapter wgpu sees and the one training would use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdapterList {
    pub adapters: Vec<AdapterSummary>,
    /// Index into `adapters` of the one [`Gpu::new`] would choose.
    pub chosen: Option<usize>,
}

impl AdapterList {
    /// [`list_adapters`] under `opts`, with why none was chosen (if so).
    pub fn new(opts: &GpuOptions) -> (AdapterList, Option<GpuError>) {
        let (adapters, chosen) = list_adapters(opts);
        let (chosen, why) = match chosen {
            Ok(i) => (Some(i), None),
            Err(e) => (None, Some(e)),
        };
        (AdapterList { adapters, chosen }, why)
    }

    /// The table: a row per adapter (`*` marks the chosen one), then the choice, or
    /// `no adapter qualifies` (why is the caller's error to give, once).
    pub fn to_text(&self) -> String {
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
        for (i, a) in self.adapters.iter().enumerate() {
            let driver = if a.driver_info.is_empty() {
                a.driver.clone()
            } else {
                format!("{} {}", a.driver, a.driver_info)
            };
            rows.push(vec![
                if self.chosen == Some(i) { "*" } else { "" }.to_string(),
                i.to_string(),
                a.name.clone(),
                a.device_type.clone(),
                a.backend.clone(),
                driver,
                (a.max_storage_buffer_binding_size >> 20).to_string(),
                a.max_compute_workgroups_per_dimension.to_string(),
                a.max_compute_invocations_per_workgroup.to_string(),
                if a.features.is_empty() {
                    "-".to_string()
                } else {
                    a.features
                        .iter()
                        .map(|f| match *f {
                            "subgroup" if a.subgroup_min_size == a.subgroup_max_size => {
                                format!("subgroup({})", a.subgroup_min_size)
                            }
                            "subgroup" => {
                                format!("subgroup({}-{})", a.subgroup_min_size, a.subgroup_max_size)
                            }
                            f => f.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out += line.join("  ").trim_end();
            out.push('\n');
        }
        match self.chosen.and_then(|i| self.adapters.get(i)) {
            Some(a) => {
                out += &format!(
                    "\n* chosen: {} ({}, {})\n",
                    a.name, a.device_type, a.backend
                )
            }
            None => out += "\nno adapter qualifies\n",
        }
        out
    }
}

/// The optional device features kernels are chosen by, as plain facts: what
/// [`Gpu::caps`] reports for a device, and what [`DeviceCaps::planned`] would ask an adapter
/// for. Kernel selection (`HalfKind::allowed`, `ConvAlgo` on software adapters, the conv
/// override checks) reads only this, so it can be checked against any backend's feature
/// set without a device (`trainer/tests/shaders_backends.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCaps {
    /// `SHADER_F16`: `enable f16;` shaders (f16 storage) run.
    pub shader_f16: bool,
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX` with 16×16×16 f16·f16→f32 tiles (and `SUBGROUP`,
    /// subgroups of exactly 32): `shaders/gemm_coop.wgsl` runs.
    pub coop_f16: bool,
    /// `SUBGROUP` with subgroups of exactly 32 (true whenever `coop_f16` is).
    pub subgroup32: bool,
    /// A CPU adapter with `SUBGROUP` and subgroups of exactly 8: the `conv2d_*_bcast.wgsl`
    /// kernels run.
    pub subgroup8: bool,
    /// A CPU (software) adapter: conv `Auto` takes the CPU kernels.
    pub cpu: bool,
}

impl DeviceCaps {
    /// What [`Gpu::new`] asks for on an adapter of `device_type` offering `features` (after
    /// the `LIMPQ_NO_*` switches took theirs away), with subgroups of `subgroup_sizes`
    /// (min, max), `coop_tile` telling whether it lists a 16×16×16 f16·f16→f32
    /// cooperative-matrix configuration:
    /// - f16 storage wherever `SHADER_F16` is offered;
    /// - cooperative matrices only with f16, `SUBGROUP` and subgroups of exactly 32 (the
    ///   tensor-core kernel names its subgroup, and a 32-invocation workgroup must be one
    ///   whole subgroup), and the tile listed;
    /// - subgroups of 8 on CPU adapters with `SUBGROUP` and subgroups of exactly 8
    ///   (lavapipe on x86-64).
    pub fn planned(
        features: wgpu::Features,
        subgroup_sizes: (u32, u32),
        device_type: wgpu::DeviceType,
        coop_tile: bool,
    ) -> DeviceCaps {
        let cpu = device_type == wgpu::DeviceType::Cpu;
        let shader_f16 = features.contains(wgpu::Features::SHADER_F16);
        let subgroup = features.contains(wgpu::Features::SUBGROUP);
        let coop_f16 = shader_f16
            && subgroup
            && features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && coop_tile
            && subgroup_sizes == (32, 32);
        DeviceCaps {
            shader_f16,
            coop_f16,
            subgroup32: coop_f16,
            subgroup8: subgroup && cpu && subgroup_sizes == (8, 8),
            cpu,
        }
    }
}

/// Errors wgpu reported outside any error scope, and a device-lost message.
#[derive(Default)]
struct ErrorSink {
    first: Option<GpuError>,
    count: usize,
}

/// The device, its queue, and the pipeline cache. Create one per process (it is `Sync`;
/// share it behind an `Arc` if several threads record work).
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::Adapter,
    /// What was chosen, for logs and reports.
    pub summary: AdapterSummary,
    /// The device was created with `SHADER_F16`: `enable f16;` shaders (f16 storage) run.
    pub shader_f16: bool,
    /// The device was created with `EXPERIMENTAL_COOPERATIVE_MATRIX` and `SUBGROUP`, and the
    /// adapter offers 16×16×16 f16·f16→f32 tiles with subgroups of exactly 32 (NVIDIA):
    /// `shaders/gemm_coop.wgsl` runs, every variant.
    pub coop_f16: bool,
    /// The device was created with `SUBGROUP` and the adapter's subgroups are exactly 32
    /// wide (true whenever `coop_f16` is: the tensor-core kernel tells its subgroups apart
    /// by `subgroup_id`).
    pub subgroup32: bool,
    /// A CPU adapter whose subgroups are exactly 8 wide (lavapipe on x86-64), created with
    /// `SUBGROUP` (unless `LIMPQ_NO_SUBGROUP` is set): kernels that share loads by subgroup
    /// broadcast in groups of 8 (the `conv2d_*_bcast.wgsl` kernels) run.
    pub subgroup8: bool,
    /// The limits kernels plan against: the device's (equal to the adapter's). Lowering one
    /// is allowed (tests lower `max_compute_workgroups_per_dimension` to exercise grid
    /// splitting); raising one past the device's makes wgpu reject the work.
    pub limits: wgpu::Limits,
    errors: Arc<Mutex<ErrorSink>>,
    pub(crate) pipelines: Mutex<HashMap<&'static str, Arc<Pipeline>>>,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.summary)
            .finish()
    }
}

impl Gpu {
    /// Choose an adapter (see the module docs) and create the device with its full limits.
    pub fn new(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        let (mut adapters, chosen) = search(opts);
        let adapter = adapters.swap_remove(chosen?);
        let summary = AdapterSummary::of(&adapter);
        tracing::info!(
            adapter = %summary.name,
            backend = %summary.backend,
            device_type = %summary.device_type,
            driver = %summary.driver,
            "chosen GPU adapter"
        );
        if summary.device_type == "Cpu" {
            tracing::warn!(adapter = %summary.name, "using a software adapter: expect it to be slow");
        }
        let limits = adapter.limits();
        let info = adapter.get_info();
        // The switches take a feature away before the plan sees it.
        let mut offered = adapter.features();
        if env_off("LIMPQ_NO_F16") {
            offered.remove(wgpu::Features::SHADER_F16);
        }
        if env_off("LIMPQ_NO_COOP") {
            offered.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        }
        if env_off("LIMPQ_NO_SUBGROUP") && info.device_type == wgpu::DeviceType::Cpu {
            offered.remove(wgpu::Features::SUBGROUP);
        }
        let plan = DeviceCaps::planned(
            offered,
            (info.subgroup_min_size, info.subgroup_max_size),
            info.device_type,
            coop_f16_tile(&adapter),
        );
        let want_f16 = plan.shader_f16;
        let want_coop = plan.coop_f16;
        let want_sg32 = plan.subgroup32;
        let want_sg8 = plan.subgroup8;
        let request = |f16: bool, coop: bool, sg: bool| {
            let mut required_features = wgpu::Features::empty();
            if f16 {
                required_features |= wgpu::Features::SHADER_F16;
            }
            if sg {
                required_features |= wgpu::Features::SUBGROUP;
            }
            let experimental_features = if coop {
                required_features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
                // SAFETY: `enabled()` is unsafe because wgpu's experimental features may have
                // bugs that cause UB when used incorrectly. The only experimental feature
                // requested is cooperative matrices, and only shaders/gemm_coop.wgsl uses
                // it, as its API requires: every coopLoadT/coopStoreT pointer is in bounds
                // (the operands are padded to multiples of 16 and tile origins are clamped
                // into them; each stored tile is a 256-float slice, at `subgroup_id · 256`,
                // of a 1024-float workgroup array, and `subgroup_id` < 4), the matrix ops run
                // in subgroup-uniform control flow (the only branch around them is on the
                // `PREFETCH` override constant), every workgroup is a whole number of full
                // subgroups (32 or 128 invocations from the `SUBGROUPS` constant, 1 or 4,
                // subgroups of exactly 32: checked in `coop_f16_usable`), no two subgroups
                // write the same workgroup memory (one staging tile per subgroup, told apart
                // by `subgroup_id`, which SUBGROUP, always requested with cooperative
                // matrices, provides), and the only tile configuration used (16×16×16
                // f16·f16→f32) is one the adapter lists.
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            };
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("limpq"),
                required_features,
                required_limits: limits.clone(),
                experimental_features,
                ..Default::default()
            }))
        };
        // Ask for what the adapter offers; if refused, drop subgroups (and with them
        // cooperative matrices, which need them), then f16.
        let want_sg = want_sg32 || want_sg8;
        let mut tries = vec![(want_f16, want_coop, want_sg)];
        if want_sg || want_coop {
            tries.push((want_f16, false, false));
        }
        if want_f16 {
            tries.push((false, false, false));
        }
        let mut outcome = None;
        for (f16, coop, sg) in tries {
            match request(f16, coop, sg) {
                Ok(dq) => {
                    outcome = Some((f16, coop, sg, dq));
                    break;
                }
                Err(e) if f16 || coop || sg => tracing::warn!(
                    adapter = %summary.name,
                    "device request with shader-f16={f16} cooperative-matrix={coop} \
                     subgroup={sg} failed ({e}); retrying with less"
                ),
                Err(e) => return Err(GpuError::RequestDevice(format!("{}: {e}", summary.name))),
            }
        }
        let (shader_f16, coop_f16, subgroup, (device, queue)) = outcome.ok_or_else(|| {
            GpuError::RequestDevice(format!("{}: no device request succeeded", summary.name))
        })?;
        let subgroup32 = subgroup && want_sg32;
        let subgroup8 = subgroup && want_sg8;
        tracing::debug!(
            shader_f16,
            coop_f16,
            subgroup32,
            subgroup8,
            "optional device features"
        );
        let errors = Arc::new(Mutex::new(ErrorSink::default()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("uncaptured wgpu error: {e}");
            if let Ok(mut s) = sink.lock() {
                s.count += 1;
                s.first.get_or_insert_with(|| GpuError::from(e));
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason == wgpu::DeviceLostReason::Destroyed {
                return;
            }
            tracing::error!("GPU device lost ({reason:?}): {msg}");
            if let Ok(mut s) = sink.lock() {
                s.count += 1;
                s.first
                    .get_or_insert_with(|| GpuError::DeviceLost(format!("{reason:?}: {msg}")));
            }
        });
        Ok(Gpu {
            device,
            queue,
            adapter,
            summary,
            shader_f16,
            coop_f16,
            subgroup32,
            subgroup8,
            limits,
            errors,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// The optional features this device was created with, as kernel selection reads them.
    pub fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            shader_f16: self.shader_f16,
            coop_f16: self.coop_f16,
            subgroup32: self.subgroup32,
            subgroup8: self.subgroup8,
            cpu: self.is_cpu(),
        }
    }

    /// Whether the adapter is a CPU (software) one, such as Mesa lavapipe.
    pub fn is_cpu(&self) -> bool {
        self.adapter.get_info().device_type == wgpu::DeviceType::Cpu
    }

    /// The first error wgpu reported outside any scope since the last call (validation,
    /// out-of-memory, device lost), if any; clears it.
    pub fn check(&self) -> Result<(), GpuError> {
        let mut s = self.errors.lock().map_err(|_| {
            GpuError::Internal("error sink poisoned by a panicking thread".to_string())
        })?;
        let count = std::mem::take(&mut s.count);
        match s.first.take() {
            Some(e) if count > 1 => Err(match e {
                GpuError::Validation(m) => {
                    GpuError::Validation(format!("{m} (and {} more errors)", count - 1))
                }
                other => other,
            }),
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Run `f` inside validation and out-of-memory error scopes and return the first error
    /// raised while it ran. Scopes are per thread: call it on the thread that uses the device.
    pub fn scoped<R>(&self, f: impl FnOnce() -> R) -> Result<R, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match v.or(o) {
            Some(e) => Err(e.into()),
            None => Ok(r),
        }
    }

    /// Block until all submitted work has finished, then report any captured error.
    pub fn wait(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(format!("device poll: {e}")))?;
        self.check()
    }
}

/// Prepare the process environment for probing GPUs on a headless machine; call it first
/// thing in `main`, before any thread exists.
///
/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` reorders the adapters so that
/// the one driving the desktop comes first; to find the desktop it connects to Wayland,
/// which without a session runtime folder (`XDG_RUNTIME_DIR` unset: servers, containers,
/// CI) prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` on every
/// probe. [`Gpu::new`] ranks adapters itself (discrete first, software last), so with no
/// desktop session this sets `NODEVICE_SELECT=1` (the layer's own off switch) — unless the
/// user set `NODEVICE_SELECT` or asked the layer for a device (`MESA_VK_DEVICE_SELECT`).
/// Returns whether it set it. With a session, nothing changes.
pub fn quiet_headless_probing() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("XDG_RUNTIME_DIR") || set("NODEVICE_SELECT") || set("MESA_VK_DEVICE_SELECT") {
        return false;
    }
    // The caller runs this before spawning any thread, so nothing reads the environment
    // concurrently (the only hazard of `set_var`).
    std::env::set_var("NODEVICE_SELECT", "1");
    true
}

/// Whether the environment variable `name` is set to something other than `""` / `0`.
fn env_off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether `adapter` lists a 16×16×16 f16·f16→f32 cooperative-matrix configuration (the
/// subgroup width `shaders/gemm_coop.wgsl` also needs is [`DeviceCaps::planned`]'s business).
fn coop_f16_tile(adapter: &wgpu::Adapter) -> bool {
    adapter
        .features()
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        && coop_config_ok(&adapter.cooperative_matrix_properties(), 32, 32)
}

fn coop_config_ok(
    props: &[wgpu::CooperativeMatrixProperties],
    subgroup_min: u32,
    subgroup_max: u32,
) -> bool {
    use wgpu::CooperativeScalarType as S;
    let tile = props.iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16) && p.ab_type == S::F16 && p.cr_type == S::F32
    });
    // A 32-invocation workgroup must be exactly one full subgroup: with narrower subgroups
    // two of them would race on the staging tile, with wider ones the subgroup is partial.
    tile && (subgroup_min, subgroup_max) == (32, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        name: &str,
        device_type: wgpu::DeviceType,
        backend: wgpu::Backend,
    ) -> wgpu::AdapterInfo {
        let mut i = wgpu::AdapterInfo::new(device_type, backend);
        i.name = name.to_string();
        i
    }

    #[test]
    fn node_local_ranks_are_dealt_the_default_kind_of_adapter() {
        use wgpu::{Backend as B, DeviceType as T};
        // Four discrete Vulkan GPUs among an integrated one, lavapipe and GL adapters;
        // the default (what one process opens) is the first discrete Vulkan one, index 1.
        let kinds = [
            (B::Vulkan, T::IntegratedGpu),
            (B::Vulkan, T::DiscreteGpu),
            (B::Gl, T::DiscreteGpu),
            (B::Vulkan, T::DiscreteGpu),
            (B::Vulkan, T::Cpu),
            (B::Vulkan, T::DiscreteGpu),
            (B::Vulkan, T::DiscreteGpu),
        ];
        let infos: Vec<_> = kinds.iter().map(|&(b, t)| info("x", t, b)).collect();
        let default = default_choice(&infos, None).unwrap();
        assert_eq!(default, 1);
        let got: Vec<usize> = (0..6)
            .map(|r| rank_adapter_index(&kinds, default, r))
            .collect();
        assert_eq!(
            got,
            [1, 3, 5, 6, 1, 3],
            "local rank mod the 4 discrete Vulkan GPUs"
        );
        // One adapter (lavapipe, as in CI): every rank shares it.
        let one = [(B::Vulkan, T::Cpu)];
        assert!((0..3).all(|r| rank_adapter_index(&one, 0, r) == 0));
        // A default outside the list changes nothing.
        assert_eq!(rank_adapter_index(&one, 4, 2), 4);
    }

    #[test]
    fn coop_needs_16x16x16_f16_f32_and_small_subgroups() {
        use wgpu::CooperativeScalarType as S;
        let prop = |m, ab, cr| wgpu::CooperativeMatrixProperties {
            m_size: m,
            n_size: m,
            k_size: m,
            ab_type: ab,
            cr_type: cr,
            saturating_accumulation: false,
        };
        let h200 = [prop(16, S::F16, S::F32), prop(16, S::F16, S::F16)];
        assert!(coop_config_ok(&h200, 32, 32));
        assert!(
            !coop_config_ok(&h200, 16, 32),
            "Intel: two subgroups per workgroup would race on the staging tile"
        );
        assert!(
            !coop_config_ok(&h200, 64, 64),
            "AMD wave64: a 32 workgroup is a partial subgroup"
        );
        assert!(!coop_config_ok(&h200, 32, 128));
        assert!(!coop_config_ok(&[prop(16, S::F16, S::F16)], 32, 32));
        assert!(!coop_config_ok(&[prop(8, S::F16, S::F32)], 32, 32));
        assert!(!coop_config_ok(&[], 32, 32));
    }

    #[test]
    fn prefers_discrete_then_integrated_then_software_and_not_gl() {
        use wgpu::{Backend as B, DeviceType as T};
        let all = [
            info("llvmpipe", T::Cpu, B::Gl),
            info("llvmpipe", T::Cpu, B::Vulkan),
            info("Intel UHD", T::IntegratedGpu, B::Vulkan),
            info("NVIDIA H200", T::DiscreteGpu, B::Gl),
            info("NVIDIA H200", T::DiscreteGpu, B::Vulkan),
        ];
        assert_eq!(choose_info(&all, None), Ok(4));
        assert_eq!(choose_info(&all[..3], None), Ok(2));
        assert_eq!(choose_info(&all[..2], None), Ok(1));
        assert_eq!(choose_info(&all, Some("LLVMPIPE")), Ok(1));
        assert_eq!(choose_info(&all, Some("uhd")), Ok(2));
        match choose_info(&all, Some("radeon")) {
            Err(GpuError::NoMatchingAdapter { wanted, seen }) => {
                assert_eq!(wanted, "radeon");
                assert_eq!(seen.len(), 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            choose_info(&[], None),
            Err(GpuError::NoAdapter { .. })
        ));
        assert!(matches!(
            choose_info(&[info("noop", T::Other, B::Noop)], None),
            Err(GpuError::NoAdapter { .. })
        ));
    }

    #[test]
    fn adapter_pick_parses_index_name_backend() {
        let p = |s: &str| s.parse::<AdapterPick>();
        assert_eq!(p("1").unwrap().which, Which::Index(1));
        assert_eq!(p(" 1 ").unwrap().backend, None);
        assert_eq!(p("LLVMpipe").unwrap().which, Which::Name("llvmpipe".into()));
        let gl = p("GL").unwrap();
        assert_eq!(
            (gl.backend, gl.which),
            (Some(wgpu::Backend::Gl), Which::Preferred)
        );
        let v0 = p("vulkan:0").unwrap();
        assert_eq!(
            (v0.backend, v0.which),
            (Some(wgpu::Backend::Vulkan), Which::Index(0))
        );
        let vn = p("dx12:Radeon RX").unwrap();
        assert_eq!(
            (vn.backend, vn.which),
            (Some(wgpu::Backend::Dx12), Which::Name("radeon rx".into()))
        );
        for bad in ["", "  ", "opengles:1", "99999999999999999999999"] {
            let e = p(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
        assert!(p("opengles:1").unwrap_err().contains("opengles"));
    }

    #[test]
    fn pick_adapter_by_index_name_and_backend() {
        use wgpu::{Backend as B, DeviceType as T};
        // As `limpq devices` lists a two-GPU workstation with lavapipe and GL.
        let list = [
            info("NVIDIA H200", T::DiscreteGpu, B::Vulkan),
            info("NVIDIA RTX 4090", T::DiscreteGpu, B::Vulkan),
            info("llvmpipe (LLVM 15)", T::Cpu, B::Vulkan),
            info("NVIDIA H200/PCIe", T::DiscreteGpu, B::Gl),
            info("llvmpipe (LLVM 15)", T::Cpu, B::Gl),
        ];
        let pick = |s: &str| pick_adapter(&list, &s.parse().unwrap(), "--adapter");
        assert_eq!(pick("1"), Ok(1));
        assert_eq!(pick("4"), Ok(4));
        assert_eq!(pick("rtx"), Ok(1));
        // A name on two backends: the non-GL one; a backend narrows it.
        assert_eq!(pick("LLVMPIPE"), Ok(2));
        assert_eq!(pick("gl:llvmpipe"), Ok(4));
        // An index after a backend counts that backend's adapters.
        assert_eq!(pick("gl:0"), Ok(3));
        assert_eq!(pick("vulkan:2"), Ok(2));
        // A backend alone: its preferred adapter (discrete first).
        assert_eq!(pick("gl"), Ok(3));
        assert_eq!(pick("vulkan"), Ok(0));
        for bad in ["5", "radeon", "gl:2", "metal", "dx12:0"] {
            match pick(bad) {
                Err(e @ GpuError::NoSuchAdapter { .. }) => {
                    let m = e.to_string();
                    assert!(m.contains(&format!("{bad:?}")), "{m}");
                    assert!(m.contains("--adapter"), "{m}");
                    assert!(
                        m.contains("0: NVIDIA H200 (Vulkan, DiscreteGpu)")
                            && m.contains("4: llvmpipe (LLVM 15) (Gl, Cpu)"),
                        "the error lists every adapter: {m}"
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            pick_adapter(&[], &"0".parse().unwrap(), "LIMPQ_ADAPTER"),
            Err(GpuError::NoSuchAdapter { .. })
        ));
    }

    #[test]
    fn default_choice_prefers_non_gl_like_the_search() {
        use wgpu::{Backend as B, DeviceType as T};
        let list = [
            info("llvmpipe", T::Cpu, B::Vulkan),
            info("NVIDIA", T::DiscreteGpu, B::Gl),
        ];
        assert_eq!(default_choice(&list, None), Ok(0));
        assert_eq!(default_choice(&list[1..], None), Ok(0));
        assert_eq!(default_choice(&list, Some("nvidia")), Ok(1));
    }
}
