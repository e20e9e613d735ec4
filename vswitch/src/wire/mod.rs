//! Frames and headers as the wire has them: zero-copy views and reprs to
//! parse and emit, ICMP error and tunnel formats, and the Internet checksum.
//! Nothing here knows of ports, tables or the pipeline.

pub mod checksum;
pub mod eth;
pub mod filter;
pub mod icmp;
pub mod ipv4;
pub mod tunnel;
