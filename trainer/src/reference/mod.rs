//! CPU reference implementations of every op, forward and backward: the oracle for GPU kernels.
