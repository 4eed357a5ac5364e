//! Storage buffers of 4-byte elements, allocated once, with uploads and one-off readbacks.

use super::recorder::Recorder;
use super::{Gpu, GpuError};

/// A GPU storage buffer of `len` 4-byte elements (f32, or u32 for labels/counters).
///
/// The allocation is rounded up to a multiple of 4 elements (16 bytes, at least 16) and
/// zero-filled, so kernels may view it as `array<vec4<f32>>`; the padding stays zero unless a
/// kernel writes past `len` (none does).
#[derive(Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub(super) len: usize,
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
        // In an error scope: an allocation the device cannot make is reported here, naming
        // the tensor, not later as an invalid buffer in whichever kernel binds it first.
        let buffer = gpu
            .scoped(|| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .map_err(|e| match e {
                GpuError::OutOfMemory(m) => {
                    GpuError::OutOfMemory(format!("allocating tensor {label} ({bytes} bytes): {m}"))
                }
                GpuError::Validation(m) => {
                    GpuError::Validation(format!("allocating tensor {label} ({bytes} bytes): {m}"))
                }
                other => other,
            })?;
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
