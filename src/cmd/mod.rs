//! One module per subcommand: its clap `Args` and its `run`.
pub mod bench_solver;
pub mod cancel;
pub mod demo;
pub mod devices;
pub mod eval;
pub mod finetune;
pub mod import_limpq;
pub mod indicators;
pub mod jobs;
pub mod layers;
pub mod pipeline;
pub mod serve;
pub mod shutdown;
pub mod solve;
pub mod submit;
pub mod train;
pub mod watch;
