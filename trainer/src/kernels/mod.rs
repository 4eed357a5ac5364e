//! GPU kernels: one op struct per kernel, one WGSL file per kernel under `shaders/`.
//!
//! The runtime the ops are built on — [`KernelSpec`], the pipeline cache, [`Tensor`],
//! [`Recorder`], [`Dispatch`], [`grid`] — lives in [`crate::gpu`]; it is re-exported here
//! so an op file names everything it uses through `super::`.
//!
//! Adding a kernel: write `shaders/NAME.wgsl`; declare a `static SPEC: KernelSpec`; a small
//! op struct whose `new` checks tensor lengths, writes the params uniform and builds its
//! [`Dispatch`], and whose `record` hands that to a [`Recorder`]. See `gemm.rs`. Then list
//! every pipeline the op may build (its spec, or each [`Specialization`]) in the module's
//! `pipelines()`: [`pipelines`] gathers them, and `tests/shaders_backends.rs` translates each
//! one for every backend and checks the device features it needs against kernel selection.

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

use crate::gpu::DeviceCaps;

pub use crate::gpu::{
    expand_includes, grid, pipeline, profile, specialized_pipeline, to_u32, uniform, write_uniform,
    Binding, Dispatch, KernelSpec, Pipeline, Readbacks, Recorder, Specialization, Tensor,
};

/// Device features a pipeline needs beyond WebGPU's baseline (each one a WGSL capability:
/// `enable f16;`, subgroup built-ins, `enable wgpu_cooperative_matrix;`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// f16 storage or arithmetic (`SHADER_F16`).
    pub f16: bool,
    /// Subgroup operations (`SUBGROUP`) assuming subgroups of exactly 8 (CPU adapters).
    pub subgroup8: bool,
    /// Subgroup operations with subgroups of exactly 32 and cooperative matrices
    /// (`SUBGROUP`, `EXPERIMENTAL_COOPERATIVE_MATRIX`).
    pub coop: bool,
}

impl Needs {
    /// Nothing beyond WebGPU.
    pub const NONE: Needs = Needs {
        f16: false,
        subgroup8: false,
        coop: false,
    };

    /// Whether a device with `caps` has everything needed.
    pub fn met_by(self, caps: &DeviceCaps) -> bool {
        (!self.f16 || caps.shader_f16)
            && (!self.subgroup8 || caps.subgroup8)
            && (!self.coop || (caps.coop_f16 && caps.subgroup32))
    }

    /// The needs as device feature names, for reports (`-` for none).
    pub fn describe(self) -> String {
        let mut v = Vec::new();
        if self.f16 {
            v.push("shader-f16");
        }
        if self.subgroup8 {
            v.push("subgroup(8)");
        }
        if self.coop {
            v.push("subgroup(32)+cooperative-matrix");
        }
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join("+")
        }
    }
}

/// Which kernel selection decides whether a pipeline is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBy {
    /// Built wherever its op runs, on every device.
    Always,
    /// Built by the conv ops when one of these algorithms is chosen (by `Auto`, an override
    /// or by name; [`conv::ConvAlgo::allowed`] decides).
    Conv(&'static [conv::ConvAlgo]),
    /// The product kernel of one f16 GEMM kind ([`gemm_f16::HalfKind::allowed`]).
    Half(gemm_f16::HalfKind),
    /// Packing / im2col / scaling around every f16 GEMM kind: built when any kind is allowed.
    AnyHalf,
}

/// One pipeline a kernel op may build: the shader, the override constants it is built with,
/// what it needs of the device, and which selection decides whether it is built.
#[derive(Debug, Clone, Copy)]
pub struct PipelineEntry {
    /// The pipeline cache id (the spec's, or the specialization's).
    pub id: &'static str,
    pub spec: &'static KernelSpec,
    /// Pipeline-overridable constants set when it is built (none: the shader's defaults).
    pub constants: &'static [(&'static str, f64)],
    pub needs: Needs,
    pub selected_by: SelectedBy,
}

impl PipelineEntry {
    pub(crate) const fn spec(spec: &'static KernelSpec) -> PipelineEntry {
        PipelineEntry {
            id: spec.id,
            spec,
            constants: &[],
            needs: Needs::NONE,
            selected_by: SelectedBy::Always,
        }
    }

    pub(crate) const fn specialized(sp: &'static Specialization) -> PipelineEntry {
        PipelineEntry {
            id: sp.id,
            spec: sp.spec,
            constants: sp.constants,
            needs: Needs::NONE,
            selected_by: SelectedBy::Always,
        }
    }

    pub(crate) const fn needs(mut self, needs: Needs) -> PipelineEntry {
        self.needs = needs;
        self
    }

    pub(crate) const fn by(mut self, selected_by: SelectedBy) -> PipelineEntry {
        self.selected_by = selected_by;
        self
    }

    /// Whether kernel selection can build this pipeline on a device with `caps`, asked
    /// through the same functions the ops use.
    pub fn selectable(&self, caps: &DeviceCaps) -> bool {
        match self.selected_by {
            SelectedBy::Always => true,
            SelectedBy::Conv(algos) => algos.iter().any(|a| a.allowed(caps)),
            SelectedBy::Half(kind) => kind.allowed(caps),
            SelectedBy::AnyHalf => gemm_f16::HalfKind::ALL.iter().any(|k| k.allowed(caps)),
        }
    }
}

/// Every pipeline any kernel op may build, each with its override constants and the device
/// features it needs.
pub fn pipelines() -> Vec<PipelineEntry> {
    [
        conv::pipelines(),
        conv_f16::pipelines(),
        elementwise::pipelines(),
        gemm::pipelines(),
        gemm_f16::pipelines(),
        loss::pipelines(),
        lsq::pipelines(),
        norm::pipelines(),
        optim::pipelines(),
        pool::pipelines(),
        reduce::pipelines(),
    ]
    .concat()
}
