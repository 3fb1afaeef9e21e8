//! Compile-pass and compile-fail tests of `#[cached_batch]`, picked up by glob.
//!
//! The `.stderr` snapshots are pinned to the workspace toolchain (rustc 1.95): another compiler
//! words its errors differently. Refresh them after changing a message with
//! `TRYBUILD=overwrite cargo test -p ruecache-ui-tests`, then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
