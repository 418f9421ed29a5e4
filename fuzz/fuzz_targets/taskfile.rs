//! Fuzz target `taskfile`: see `entries::taskfile` for what it feeds and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../entries.rs"]
mod entries;

fuzz_target!(|data: &[u8]| entries::taskfile(data));
