#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gitmouth_fuzz_bodies::proxy_header(data));
