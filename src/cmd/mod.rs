//! One module per subcommand: its clap `Args` and its `run`.
pub mod bench_solver;
pub mod devices;
pub mod import_limpq;
pub mod layers;
pub mod solve;
