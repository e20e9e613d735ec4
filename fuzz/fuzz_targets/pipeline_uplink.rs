//! Frames arriving on uplink ports (see `vswitch_fuzz::pipeline`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vswitch_fuzz::pipeline::run(vswitch_fuzz::pipeline::Kind::Uplink, data)
});
