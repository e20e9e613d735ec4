//! See `vswitch_fuzz::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch_fuzz::control::run(data));
