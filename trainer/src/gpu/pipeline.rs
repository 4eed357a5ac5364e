//! Compiled pipelines (built once per process and cached in the [`Gpu`]), ready-to-record
//! dispatches, workgroup grids and uniform buffers.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::kernel::{expand_includes, Binding, KernelSpec, Specialization};
use super::{Gpu, GpuError};

/// A compiled compute pipeline and its explicit bind group layout.
#[derive(Debug)]
pub struct Pipeline {
    pub id: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    bindings: &'static [Binding],
}

/// The pipeline for `spec`, built on first use and cached in `gpu` by `spec.id`.
/// A shader that fails to compile or does not match its layout is an error, not a panic.
pub fn pipeline(gpu: &Gpu, spec: &'static KernelSpec) -> Result<Arc<Pipeline>, GpuError> {
    cached_pipeline(gpu, spec, spec.id, &[])
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
        .map_err(|e| match e {
            GpuError::Validation(m) => {
                GpuError::Validation(format!("kernel {} bind group: {m}", self.id))
            }
            other => other,
        })
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

/// Pipeline, bind group and workgroup counts of one kernel launch. Build once, record often.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub id: &'static str,
    pub(super) pipeline: wgpu::ComputePipeline,
    pub(super) bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}
