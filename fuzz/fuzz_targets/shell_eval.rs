#![no_main]
//! See `wes_fuzz::shell_eval` for what this target feeds and checks; it runs
//! on a thread with the server's stack size (`wes_fuzz::SERVER_STACK`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wes_fuzz::escaping_panics_only(
        |data| wes_fuzz::on_server_stack(wes_fuzz::shell_eval, data),
        data,
    )
});
