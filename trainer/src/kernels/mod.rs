//! GPU kernels: one WGSL file per kernel under shaders/, pipelines built once.
