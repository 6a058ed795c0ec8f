//! The throwaway scram-sha-256 cluster now lives in the `scratch-cluster` crate (the
//! benchmarks use it too).

pub use scratch_cluster::ScratchCluster;
