#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pcaplab_core::fuzzing::quic(data));
