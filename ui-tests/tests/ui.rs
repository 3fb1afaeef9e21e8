//! Compile-pass and compile-fail tests of `#[cached_batch]`, picked up by glob.
//!
//! The compile-fail `.stderr` snapshots are pinned to one compiler (rustc 1.95): another one words
//! its errors differently, so on any other version that test is ignored (the pass tests run on
//! every compiler). Refresh the snapshots after changing a message with
//! `TRYBUILD=overwrite cargo test -p ruecache-ui-tests`, then read every changed `.stderr`.

#[test]
fn pass() {
    trybuild::TestCases::new().pass("tests/ui/pass/*.rs");
}

#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr snapshots are those of rustc 1.95"
)]
#[test]
fn compile_fail() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
