//! See `vswitch_fuzz::cni`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch_fuzz::cni::run(data));
