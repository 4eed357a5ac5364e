//! What a kernel is before it is compiled: a [`KernelSpec`] (one entry point of one
//! `shaders/NAME.wgsl` file and its bindings), a [`Specialization`] (a spec with WGSL
//! pipeline-overridable constants set), and the `//#include` expansion every shader source
//! goes through before it is compiled or validated.

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
