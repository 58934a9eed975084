#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|src: &str| drop(vmemu_harness::lang::parse("fuzz.vmw", src)));
