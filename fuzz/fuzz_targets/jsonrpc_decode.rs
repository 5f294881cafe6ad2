#![no_main]
//! See `wes_fuzz::jsonrpc_frame` for what this target feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wes_fuzz::escaping_panics_only(
    wes_fuzz::jsonrpc_frame,
    data
));
