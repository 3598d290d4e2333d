//! The crate dependency rules of docs/ARCHITECTURE.md ("Which crate may use which"),
//! checked from every crate's Cargo.toml: the map's claim cannot drift from the code.

use std::collections::BTreeSet;

/// Each crate's directory and the workspace crates its `[dependencies]` may name.
const RULES: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("adapter", &["mcp-core"]),
    ("worker", &["mcp-core", "mcp-adapter"]),
    ("gateway", &["mcp-core", "mcp-adapter"]),
    ("supervisor", &["mcp-core"]),
    ("admin-api", &["mcp-core"]),
    ("loadtest", &["mcp-core", "mcp-adapter", "mcp-testkit"]),
    ("testkit", &[]),
];

/// What `[dev-dependencies]` may name: libraries, never another binary's crate.
const DEV_ALLOWED: &[&str] = &["mcp-core", "mcp-adapter", "mcp-testkit"];

/// The workspace crates named in `section` of a Cargo.toml.
fn workspace_deps(manifest: &str, section: &str) -> BTreeSet<String> {
    let mut inside = false;
    let mut deps = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == section;
            continue;
        }
        if inside && line.starts_with("mcp-") {
            let name = line.split(['.', '=', ' ']).next().unwrap_or_default();
            deps.insert(name.to_owned());
        }
    }
    deps
}

#[test]
fn every_crate_uses_only_the_crates_the_map_allows() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let workspace = std::fs::read_to_string(format!("{root}/Cargo.toml")).expect("workspace");
    for (dir, _) in RULES {
        assert!(
            workspace.contains(&format!("\"{dir}\"")),
            "{dir} is not a workspace member any more: update RULES and the map"
        );
    }
    for (dir, allowed) in RULES {
        let manifest =
            std::fs::read_to_string(format!("{root}/{dir}/Cargo.toml")).expect("manifest");
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        let deps = workspace_deps(&manifest, "[dependencies]");
        let extra: Vec<_> = deps.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{dir} depends on {extra:?}, which the map does not allow"
        );
        let dev = workspace_deps(&manifest, "[dev-dependencies]");
        let bad: Vec<_> = dev
            .iter()
            .filter(|d| !DEV_ALLOWED.contains(&d.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "{dir}'s tests depend on the binary crates {bad:?}"
        );
    }
}

#[test]
fn the_parser_reads_sections() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nmcp-core.workspace = true\nserde = \"1\"\nmcp-adapter = { path = \"../adapter\" }\n[dev-dependencies]\nmcp-worker.workspace = true\n";
    let deps: Vec<_> = workspace_deps(manifest, "[dependencies]")
        .into_iter()
        .collect();
    assert_eq!(deps, ["mcp-adapter", "mcp-core"]);
    let dev: Vec<_> = workspace_deps(manifest, "[dev-dependencies]")
        .into_iter()
        .collect();
    assert_eq!(dev, ["mcp-worker"]);
}
