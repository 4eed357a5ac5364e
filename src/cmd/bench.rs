//! `limpq bench ...`: the benchmarks. Each subcommand parses its arguments, calls its
//! harness in `limpq_trainer::bench` (or `limpq_solver::gen` for the solver) and prints
//! the figures.

/// `limpq bench ...`
#[derive(clap::Subcommand)]
pub enum Bench {
    #[cfg(feature = "gpu")]
    /// Training-step throughput (ms per step, images/s) on synthetic data: the LIMPQ joint
    /// step, one full-precision step or one quantized pass.
    Train(super::bench_train::Args),
    #[cfg(feature = "gpu")]
    /// GEMM TFLOP/s: the f32 kernel, the f16-operand kernel and (where the adapter has
    /// cooperative matrices) the tensor-core kernel, each checked against the CPU first.
    Gemm(super::bench_gemm::Args),
    #[cfg(feature = "gpu")]
    /// Conv kernels per distinct conv shape of a model: forward, backward data and backward
    /// weight under every algorithm, each checked against the CPU first; the fastest per op,
    /// what Auto picks, and the summed conv time per training step.
    Conv(super::bench_conv::Args),
    /// The exact solver against the microlp backend on the same seeded instances (CPU only).
    Solver(super::bench_solver::Args),
}

pub fn dispatch(b: Bench) -> anyhow::Result<()> {
    match b {
        #[cfg(feature = "gpu")]
        Bench::Train(a) => super::bench_train::run(a),
        #[cfg(feature = "gpu")]
        Bench::Gemm(a) => super::bench_gemm::run(a),
        #[cfg(feature = "gpu")]
        Bench::Conv(a) => super::bench_conv::run(a),
        Bench::Solver(a) => super::bench_solver::run(a),
    }
}
