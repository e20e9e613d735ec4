//! Benchmarks live in benches/; the PVP harness is the script `pvp`.
