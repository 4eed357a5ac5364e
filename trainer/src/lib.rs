//! GPU trainer for limpq.
