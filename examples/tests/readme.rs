//! The README's first program, built as a newcomer builds it: a crate of its own outside this
//! workspace, with exactly the `[dependencies]` lines the README gives (`ruecache` pointed at
//! this checkout instead of crates.io), then run against a private `redis-server`.
//!
//! The README's Rust blocks are also compiled as doctests of the `ruecache` crate; this test adds
//! what a doctest cannot check: that the dependency lines are enough, and that the program runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use ruecache_tests::start_standalone_with;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples crate is in the workspace")
        .to_path_buf()
}

/// The body of the README's first fenced block of `lang` (the info string's first word).
fn first_block<'a>(readme: &'a str, lang: &str) -> &'a str {
    let mut lines = readme.split_inclusive('\n');
    let mut start = None;
    let mut offset = 0;
    for line in lines.by_ref() {
        let fence = line.trim_end().strip_prefix("```");
        match (start, fence) {
            (None, Some(info)) if info.split(',').next() == Some(lang) => {
                start = Some(offset + line.len());
            }
            (Some(s), Some("")) => return &readme[s..offset],
            _ => {}
        }
        offset += line.len();
    }
    panic!("the README has no complete ```{lang} block");
}

#[test]
fn the_readme_program_builds_as_an_outside_crate_and_runs() {
    let root = workspace();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let dependencies = first_block(&readme, "toml");
    assert!(
        dependencies.starts_with("[dependencies]\nruecache = \"0.1\"\n"),
        "the README's dependency block starts with ruecache:\n{dependencies}"
    );
    let ruecache = root.join("ruecache");
    let dependencies = dependencies.replacen(
        "ruecache = \"0.1\"",
        &format!(
            "ruecache = {{ path = {:?} }}",
            ruecache.display().to_string()
        ),
        1,
    );
    let program = first_block(&readme, "rust");
    // The first block is the one-screen teaser; the first complete program follows it.
    let program = if program.contains("fn main") {
        program
    } else {
        let rest = &readme[readme.find(program).unwrap() + program.len()..];
        first_block(rest, "rust")
    };
    assert!(
        program.contains("fn main"),
        "a complete program:\n{program}"
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = format!(
        "[package]\nname = \"readme-service\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         publish = false\n\n[workspace]\n\n{dependencies}"
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), program).unwrap();
    // The workspace's lock: the same versions as everything else here, and nothing to download
    // that the workspace did not already.
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(dir.path().join("Cargo.toml"))
        // Kept between runs, beside the workspace's own builds.
        .env("CARGO_TARGET_DIR", root.join("target").join("readme-crate"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "the README's program does not build as an outside crate:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let server = start_standalone_with(&[]);
    let binary = root
        .join("target")
        .join("readme-crate")
        .join("debug")
        .join("readme-service");
    let run = Command::new(binary)
        .env("REDIS_URL", server.url())
        .output()
        .expect("the README's program runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the README's program failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("3 widgets found"),
        "ids 1, 2 and 3 are found, 1000 is not:\n{stdout}"
    );
    assert!(
        stdout.contains("invalidations: 1"),
        "the rename invalidated one id:\n{stdout}"
    );
}
