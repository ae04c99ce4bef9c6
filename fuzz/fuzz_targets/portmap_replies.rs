#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_tests::fuzz::portmap_replies(data));
