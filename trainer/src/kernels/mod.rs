//! GPU kernels: one WGSL file per kernel under `shaders/`, pipelines built once.
//!
//! The pieces, from the bottom up (see docs/ENGINE.md for the walk-through):
//!
//! - [`KernelSpec`]: a `static` describing one entry point of one `shaders/NAME.wgsl` file
//!   (loaded with `include_str!`) and its bindings, in binding order (all in group 0).
//! - [`pipeline`]: builds the compute pipeline for a spec with an EXPLICIT bind group layout
//!   made from the spec's bindings, once per process; later calls hit the cache in [`Gpu`].
//! - [`Tensor`]: a storage buffer of `len` 4-byte elements (f32 or u32), allocated once;
//!   upload with [`Tensor::from_f32`] / [`Tensor::write_f32`], read back with
//!   [`Tensor::read_f32`] (a blocking one-off) or through a [`Recorder`].
//! - [`uniform`]: a uniform buffer from a `bytemuck::Pod` params struct.
//! - [`Dispatch`]: pipeline + bind group + workgroup counts, built once per op of a static
//!   graph ([`Pipeline::dispatch`]).
//! - [`Recorder`]: records many dispatches (and copies/clears/readbacks) into ONE command
//!   encoder and submits them in one submission; reads back only what was asked for.
//!
//! Workgroup counts are limited per dimension (`max_compute_workgroups_per_dimension`,
//! 65535 on most adapters): [`grid`] splits a 1-D count into a 2-D grid, and the shader
//! recovers the flat index as `wid.x + wid.y * nwg.x` (`@builtin(num_workgroups) nwg`),
//! returning early past the end.
//!
//! Adding a kernel: write `shaders/NAME.wgsl`; declare a `static SPEC: KernelSpec`; a small
//! op struct whose `new` checks tensor lengths, writes the params uniform and builds its
//! [`Dispatch`], and whose `record` hands that to a [`Recorder`]. See `gemm.rs`.

pub mod conv;
pub mod conv_f16;
pub mod elementwise;
pub mod gemm;
pub mod gemm_f16;
pub mod loss;
pub mod lsq;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;

/// Per-kernel wall times for the profiling example (`trainer/examples/kernel_profile.rs`).
///
/// While on ([`profile::start`]), [`Recorder::submit`] submits every command on its own and
/// waits for each dispatch, adding its wall time (submission included) to a process-wide
/// table keyed by kernel id and workgroup grid. Off by default; costs nothing when off.
pub mod profile {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    static ON: AtomicBool = AtomicBool::new(false);
    type Table = HashMap<(&'static str, [u32; 3]), (u32, Duration)>;
    static TABLE: Mutex<Option<Table>> = Mutex::new(None);

    /// One kernel launch shape and its accumulated time.
    #[derive(Debug, Clone)]
    pub struct Entry {
        pub id: &'static str,
        pub workgroups: [u32; 3],
        /// Launches timed.
        pub count: u32,
        pub total: Duration,
    }

    pub(super) fn enabled() -> bool {
        ON.load(Ordering::Relaxed)
    }

    pub(super) fn add(id: &'static str, workgroups: [u32; 3], t: Duration) {
        if let Ok(mut g) = TABLE.lock() {
            let e = g
                .get_or_insert_with(HashMap::new)
                .entry((id, workgroups))
                .or_insert((0, Duration::ZERO));
            e.0 += 1;
            e.1 += t;
        }
    }

    /// Clear the table and start timing every dispatch (process-wide).
    pub fn start() {
        if let Ok(mut g) = TABLE.lock() {
            *g = Some(HashMap::new());
        }
        ON.store(true, Ordering::Relaxed);
    }

    /// Stop timing and return the table, largest total first.
    pub fn stop() -> Vec<Entry> {
        ON.store(false, Ordering::Relaxed);
        let table = TABLE
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or_default();
        let mut v: Vec<Entry> = table
            .into_iter()
            .map(|((id, workgroups), (count, total))| Entry {
                id,
                workgroups,
                count,
                total,
            })
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.total));
        v
    }
}

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::gpu::{Gpu, GpuError};

/// What one binding of a kernel is. Bindings are numbered in the order given, in group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `var<uniform>`: the params struct.
    Uniform,
    /// `var<storage, read>`.
    ReadOnly,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// One compute entry point of one WGSL file.
#[derive(Debug)]
pub struct KernelSpec {
    /// Unique cache key, e.g. `"gemm"` or `"conv2d_forward"`.
    pub id: &'static str,
    /// WGSL source, `include_str!("../../../shaders/NAME.wgsl")`.
    pub source: &'static str,
    /// The `@compute` function to use.
    pub entry: &'static str,
    /// Bindings 0, 1, 2, ... of group 0.
    pub bindings: &'static [Binding],
}

/// A compiled compute pipeline and its explicit bind group layout.
#[derive(Debug)]
pub struct Pipeline {
    pub id: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    bindings: &'static [Binding],
}

/// WGSL fragments shared by several kernels (`shaders/include/`), by the name a kernel's
/// `//#include NAME` line gives. WGSL has no include of its own.
const INCLUDES: &[(&str, &str)] = &[
    (
        "conv_params.wgsl",
        include_str!("../../../shaders/include/conv_params.wgsl"),
    ),
    (
        "conv_store_backward_data.wgsl",
        include_str!("../../../shaders/include/conv_store_backward_data.wgsl"),
    ),
    (
        "conv_store_forward.wgsl",
        include_str!("../../../shaders/include/conv_store_forward.wgsl"),
    ),
    (
        "quant_x.wgsl",
        include_str!("../../../shaders/include/quant_x.wgsl"),
    ),
];

/// `source` with every line `//#include NAME` replaced by the fragment `NAME` of
/// `shaders/include/` (one level: fragments include nothing). An unknown name is an error
/// naming it. What every pipeline compiles, and what `tests/shaders_validate.rs` validates.
pub fn expand_includes(source: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    const MARK: &str = "//#include ";
    if !source.contains(MARK) {
        return Ok(std::borrow::Cow::Borrowed(source));
    }
    let mut out = String::with_capacity(source.len() + 2048);
    for line in source.lines() {
        match line.trim().strip_prefix(MARK) {
            Some(name) => {
                let name = name.trim();
                let (_, text) = INCLUDES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| format!("unknown WGSL include {name:?}"))?;
                out.push_str(text);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// The pipeline for `spec`, built on first use and cached in `gpu` by `spec.id`.
/// A shader that fails to compile or does not match its layout is an error, not a panic.
pub fn pipeline(gpu: &Gpu, spec: &'static KernelSpec) -> Result<Arc<Pipeline>, GpuError> {
    cached_pipeline(gpu, spec, spec.id, &[])
}

/// A [`KernelSpec`] with WGSL pipeline-overridable constants (`override NAME: T = v;`) set
/// when its pipeline is built, e.g. a kernel variant that quantizes its input on load.
/// Constants not listed keep their defaults in the shader.
#[derive(Debug)]
pub struct Specialization {
    /// Cache key and label; must differ from every spec id and every other specialization
    /// (e.g. `"conv2d_forward+qx"`), since the cache knows a pipeline by this id alone.
    pub id: &'static str,
    pub spec: &'static KernelSpec,
    pub constants: &'static [(&'static str, f64)],
}

/// The pipeline of a [`Specialization`], built on first use and cached by its `id`.
pub fn specialized_pipeline(
    gpu: &Gpu,
    sp: &'static Specialization,
) -> Result<Arc<Pipeline>, GpuError> {
    cached_pipeline(gpu, sp.spec, sp.id, sp.constants)
}

fn cached_pipeline(
    gpu: &Gpu,
    spec: &'static KernelSpec,
    id: &'static str,
    constants: &[(&str, f64)],
) -> Result<Arc<Pipeline>, GpuError> {
    let mut cache = gpu
        .pipelines
        .lock()
        .map_err(|_| GpuError::Internal("pipeline cache poisoned".into()))?;
    if let Some(p) = cache.get(id) {
        return Ok(p.clone());
    }
    let source = expand_includes(spec.source)
        .map_err(|e| GpuError::Validation(format!("kernel {id}: {e}")))?;
    let built = gpu
        .scoped(|| build_pipeline(gpu, spec, &source, id, constants))
        .map_err(|e| match e {
            GpuError::Validation(m) => GpuError::Validation(format!("kernel {id}: {m}")),
            other => other,
        })?;
    let p = Arc::new(built);
    cache.insert(id, p.clone());
    Ok(p)
}

fn build_pipeline(
    gpu: &Gpu,
    spec: &'static KernelSpec,
    source: &str,
    id: &'static str,
    constants: &[(&str, f64)],
) -> Pipeline {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Binding::Uniform => wgpu::BufferBindingType::Uniform,
                    Binding::ReadOnly => wgpu::BufferBindingType::Storage { read_only: true },
                    Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(id),
            entries: &entries,
        });
    let pipeline_layout = gpu
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(id),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    let module = gpu
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(id),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
    let pipeline = gpu
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(id),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        });
    Pipeline {
        id,
        pipeline,
        layout,
        bindings: spec.bindings,
    }
}

impl Pipeline {
    /// A bind group over `buffers`, one per binding in spec order. Build it once per op.
    pub fn bind(&self, gpu: &Gpu, buffers: &[&wgpu::Buffer]) -> Result<wgpu::BindGroup, GpuError> {
        if buffers.len() != self.bindings.len() {
            return Err(GpuError::Shape(format!(
                "kernel {}: {} buffers given, the kernel has {} bindings",
                self.id,
                buffers.len(),
                self.bindings.len()
            )));
        }
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        gpu.scoped(|| {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(self.id),
                layout: &self.layout,
                entries: &entries,
            })
        })
        .map_err(|e| GpuError::Validation(format!("kernel {} bind group: {e}", self.id)))
    }

    /// Bind `buffers` and pair them with workgroup counts: a ready-to-record dispatch.
    pub fn dispatch(
        &self,
        gpu: &Gpu,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch, GpuError> {
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&g| g > max) {
            return Err(GpuError::Shape(format!(
                "kernel {}: workgroup grid {workgroups:?} exceeds the adapter's {max} per dimension",
                self.id
            )));
        }
        Ok(Dispatch {
            id: self.id,
            pipeline: self.pipeline.clone(),
            bind_group: self.bind(gpu, buffers)?,
            workgroups,
        })
    }
}

/// A 2-D grid of at least `groups` workgroups within the adapter's per-dimension limit.
/// Shaders take the flat workgroup index as `wid.x + wid.y * nwg.x` and return past `groups`.
pub fn grid(gpu: &Gpu, groups: u64) -> Result<[u32; 3], GpuError> {
    let max = u64::from(gpu.limits.max_compute_workgroups_per_dimension.max(1));
    let groups = groups.max(1);
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    if y > max {
        return Err(GpuError::Shape(format!(
            "{groups} workgroups exceed a {max}×{max} grid"
        )));
    }
    Ok([x as u32, y as u32, 1])
}

/// `v` as u32 for a params struct, or an error naming `what`.
pub fn to_u32(v: usize, what: &str) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| GpuError::Shape(format!("{what} = {v} does not fit in u32")))
}

/// A uniform buffer holding `params`. Rewrite it with [`write_uniform`]; note that
/// `queue.write_buffer` lands before the NEXT submission, so one submission sees one value.
pub fn uniform<T: bytemuck::Pod>(gpu: &Gpu, params: &T, label: &str) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// Overwrite a uniform buffer made by [`uniform`].
pub fn write_uniform<T: bytemuck::Pod>(gpu: &Gpu, buffer: &wgpu::Buffer, params: &T) {
    gpu.queue
        .write_buffer(buffer, 0, bytemuck::bytes_of(params));
}

/// A GPU storage buffer of `len` 4-byte elements (f32, or u32 for labels/counters).
///
/// The allocation is rounded up to a multiple of 4 elements (16 bytes, at least 16) and
/// zero-filled, so kernels may view it as `array<vec4<f32>>`; the padding stays zero unless a
/// kernel writes past `len` (none does).
#[derive(Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    len: usize,
    label: String,
}

impl Tensor {
    /// Bytes of the buffer holding `len` f32 (padded to 16 bytes; saturates, never wraps).
    pub fn padded_bytes(len: usize) -> u64 {
        (len.max(1).div_ceil(4) as u64).saturating_mul(16)
    }

    /// Whether a tensor of `len` f32 can be allocated and bound on this adapter.
    pub fn fits(gpu: &Gpu, len: usize) -> bool {
        let bytes = Self::padded_bytes(len);
        bytes <= gpu.limits.max_storage_buffer_binding_size && bytes <= gpu.limits.max_buffer_size
    }

    fn alloc(gpu: &Gpu, len: usize, label: &str) -> Result<Tensor, GpuError> {
        let bytes = Self::padded_bytes(len);
        if !Self::fits(gpu, len) {
            return Err(GpuError::Shape(format!(
                "tensor {label}: {len} elements ({bytes} bytes) exceed the adapter's \
                 storage binding limit of {} bytes",
                gpu.limits.max_storage_buffer_binding_size
            )));
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Tensor {
            buffer,
            len,
            label: label.to_string(),
        })
    }

    /// A zero-filled tensor of `len` elements.
    pub fn zeros(gpu: &Gpu, len: usize, label: &str) -> Result<Tensor, GpuError> {
        Self::alloc(gpu, len, label)
    }

    /// A tensor holding `data`.
    pub fn from_f32(gpu: &Gpu, data: &[f32], label: &str) -> Result<Tensor, GpuError> {
        let t = Self::alloc(gpu, data.len(), label)?;
        t.write_f32(gpu, data)?;
        Ok(t)
    }

    /// A tensor holding `data` (labels, indices, counters).
    pub fn from_u32(gpu: &Gpu, data: &[u32], label: &str) -> Result<Tensor, GpuError> {
        let t = Self::alloc(gpu, data.len(), label)?;
        t.write_u32(gpu, data)?;
        Ok(t)
    }

    /// The label given at creation (used in error messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Number of elements (without padding).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replace the contents (`data.len()` must equal `len()`); lands before the next submission.
    pub fn write_f32(&self, gpu: &Gpu, data: &[f32]) -> Result<(), GpuError> {
        self.write_bytes(gpu, bytemuck::cast_slice(data), data.len())
    }

    /// Replace the contents with u32 words.
    pub fn write_u32(&self, gpu: &Gpu, data: &[u32]) -> Result<(), GpuError> {
        self.write_bytes(gpu, bytemuck::cast_slice(data), data.len())
    }

    fn write_bytes(&self, gpu: &Gpu, bytes: &[u8], n: usize) -> Result<(), GpuError> {
        if n != self.len {
            return Err(GpuError::Shape(format!(
                "tensor {:?}: writing {n} elements into {}",
                self.buffer, self.len
            )));
        }
        if !bytes.is_empty() {
            gpu.queue.write_buffer(&self.buffer, 0, bytes);
        }
        Ok(())
    }

    /// Blocking one-off readback (its own submission). In a training loop ask a [`Recorder`].
    pub fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let mut rec = Recorder::new(gpu);
        rec.read(self);
        let out = rec.submit()?;
        Ok(out.f32(0).to_vec())
    }

    /// Blocking one-off readback as u32 words.
    pub fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>, GpuError> {
        let mut rec = Recorder::new(gpu);
        rec.read(self);
        let out = rec.submit()?;
        Ok(out.u32(0).to_vec())
    }
}

/// Pipeline, bind group and workgroup counts of one kernel launch. Build once, record often.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub id: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

enum Command<'a> {
    Dispatch(&'a Dispatch),
    Copy(&'a Tensor, &'a Tensor),
    Clear(&'a Tensor),
    Read(&'a Tensor),
}

/// Records dispatches, copies, clears and readbacks in order into one command encoder, and
/// submits them as one submission. Consecutive dispatches share one compute pass (wgpu
/// orders storage writes between dispatches).
///
/// ```ignore
/// let mut rec = Recorder::new(&gpu);
/// forward.record(&mut rec);
/// backward.record(&mut rec);
/// let loss = rec.read(&loss_tensor);
/// let out = rec.submit()?;          // blocks only because something was read
/// println!("{}", out.f32(loss)[0]);
/// ```
pub struct Recorder<'a> {
    gpu: &'a Gpu,
    commands: Vec<Command<'a>>,
    reads: usize,
}

/// The values read back by one [`Recorder::submit`], indexed by what [`Recorder::read`] returned.
#[derive(Debug, Default)]
pub struct Readbacks {
    words: Vec<Vec<u32>>,
}

impl Readbacks {
    /// Read number `i` as f32.
    pub fn f32(&self, i: usize) -> &[f32] {
        self.words.get(i).map_or(&[], |w| bytemuck::cast_slice(w))
    }
    /// Read number `i` as u32.
    pub fn u32(&self, i: usize) -> &[u32] {
        self.words.get(i).map_or(&[], |w| w.as_slice())
    }
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

impl<'a> Recorder<'a> {
    pub fn new(gpu: &'a Gpu) -> Self {
        Recorder {
            gpu,
            commands: Vec::new(),
            reads: 0,
        }
    }

    /// Append a kernel launch.
    pub fn dispatch(&mut self, d: &'a Dispatch) {
        self.commands.push(Command::Dispatch(d));
    }

    /// Append a copy of `src` into `dst` (`min(len)` elements).
    pub fn copy(&mut self, src: &'a Tensor, dst: &'a Tensor) {
        self.commands.push(Command::Copy(src, dst));
    }

    /// Append zero-filling `t`.
    pub fn clear(&mut self, t: &'a Tensor) {
        self.commands.push(Command::Clear(t));
    }

    /// Append a readback of `t` as it is at this point; returns its index in [`Readbacks`].
    pub fn read(&mut self, t: &'a Tensor) -> usize {
        self.commands.push(Command::Read(t));
        self.reads += 1;
        self.reads - 1
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Dispatch(_)))
            .count()
    }

    /// Encode everything, submit once, and — only if something was read — wait and map the
    /// staging buffers. Errors wgpu reported meanwhile come back as `Err`.
    pub fn submit(self) -> Result<Readbacks, GpuError> {
        if profile::enabled() {
            return self.submit_profiled();
        }
        let gpu = self.gpu;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("limpq step"),
            });
        let mut staging: Vec<(wgpu::Buffer, usize)> = Vec::new();
        let mut i = 0;
        while i < self.commands.len() {
            if let Command::Dispatch(_) = self.commands[i] {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                while let Some(Command::Dispatch(d)) = self.commands.get(i) {
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    let [x, y, z] = d.workgroups;
                    pass.dispatch_workgroups(x, y, z);
                    i += 1;
                }
                continue;
            }
            match self.commands[i] {
                Command::Copy(src, dst) => {
                    let n = src.len.min(dst.len) as u64 * 4;
                    if n > 0 {
                        encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, n);
                    }
                }
                Command::Clear(t) => encoder.clear_buffer(&t.buffer, 0, None),
                Command::Read(t) => {
                    let bytes = Tensor::padded_bytes(t.len);
                    let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("readback staging"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    encoder.copy_buffer_to_buffer(&t.buffer, 0, &buf, 0, bytes);
                    staging.push((buf, t.len));
                }
                Command::Dispatch(_) => unreachable!("handled above"),
            }
            i += 1;
        }
        // The scope blames validation errors on this submission even when other threads
        // share the device; errors raised later (device lost) still reach `gpu.check()`.
        gpu.scoped(|| gpu.queue.submit(Some(encoder.finish())))?;
        Self::finish_reads(gpu, staging)
    }

    /// [`Recorder::submit`] while [`profile`] is on: every command is its own submission,
    /// and each dispatch is waited for and its wall time added to the profile under its
    /// kernel id and grid. Results are the same as an ordinary submit.
    fn submit_profiled(self) -> Result<Readbacks, GpuError> {
        let gpu = self.gpu;
        gpu.wait()?;
        let mut staging: Vec<(wgpu::Buffer, usize)> = Vec::new();
        for cmd in &self.commands {
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("limpq profiled command"),
                });
            match *cmd {
                Command::Dispatch(d) => {
                    {
                        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: None,
                        });
                        pass.set_pipeline(&d.pipeline);
                        pass.set_bind_group(0, &d.bind_group, &[]);
                        let [x, y, z] = d.workgroups;
                        pass.dispatch_workgroups(x, y, z);
                    }
                    let t = std::time::Instant::now();
                    gpu.scoped(|| gpu.queue.submit(Some(encoder.finish())))?;
                    gpu.wait()?;
                    profile::add(d.id, d.workgroups, t.elapsed());
                    continue;
                }
                Command::Copy(src, dst) => {
                    let n = src.len.min(dst.len) as u64 * 4;
                    if n > 0 {
                        encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, n);
                    }
                }
                Command::Clear(t) => encoder.clear_buffer(&t.buffer, 0, None),
                Command::Read(t) => {
                    let bytes = Tensor::padded_bytes(t.len);
                    let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("readback staging"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    encoder.copy_buffer_to_buffer(&t.buffer, 0, &buf, 0, bytes);
                    staging.push((buf, t.len));
                }
            }
            gpu.scoped(|| gpu.queue.submit(Some(encoder.finish())))?;
        }
        Self::finish_reads(gpu, staging)
    }

    /// Wait for and map the staging buffers of one submission (none: just check errors).
    fn finish_reads(gpu: &Gpu, staging: Vec<(wgpu::Buffer, usize)>) -> Result<Readbacks, GpuError> {
        if staging.is_empty() {
            return gpu.check().map(|_| Readbacks::default());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for (k, (buf, _)) in staging.iter().enumerate() {
            let tx = tx.clone();
            buf.slice(..)
                .map_async(wgpu::MapMode::Read, move |r| drop(tx.send((k, r))));
        }
        drop(tx);
        gpu.wait()?;
        // Another thread's poll may be the one running our callbacks; wait for all of them.
        let mut ok = vec![false; staging.len()];
        for _ in 0..staging.len() {
            let (k, r) = loop {
                match rx.recv_timeout(std::time::Duration::from_millis(20)) {
                    Ok(msg) => break msg,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        gpu.wait()?;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(GpuError::Readback("map callback dropped".into()));
                    }
                }
            };
            r.map_err(|e| GpuError::Readback(e.to_string()))?;
            ok[k] = true;
        }
        let mut words = Vec::with_capacity(staging.len());
        for ((buf, len), mapped) in staging.iter().zip(ok) {
            if !mapped {
                return Err(GpuError::Readback(
                    "a staging buffer was never mapped".into(),
                ));
            }
            let view = buf
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            // pod_collect_to_vec copies without assuming the mapping is 4-byte aligned.
            words.push(bytemuck::pod_collect_to_vec::<u8, u32>(&view[..len * 4]));
            drop(view);
            buf.unmap();
        }
        Ok(Readbacks { words })
    }
}
