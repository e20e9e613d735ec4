//! What the fuzz targets run (`fuzz_targets/`), kept here so that each
//! target is one line and a crashing input can be replayed from a test.

pub mod cni;
pub mod control;
pub mod frames;
pub mod manifest;
pub mod pipeline;
