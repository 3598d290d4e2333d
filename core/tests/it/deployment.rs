//! Docker is not available where the tests run, so the deployment files are checked by
//! parsing them: the compose topology the PRD asks for, commands that name real
//! binaries, and an `.env` example that parses.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn compose() -> Value {
    serde_norway::from_str(&repo("docker-compose.yml")).expect("docker-compose.yml is valid YAML")
}

/// Binary names declared by the workspace's crates.
fn workspace_binaries() -> BTreeSet<String> {
    [
        "admin-api",
        "gateway",
        "supervisor",
        "worker",
        "testkit",
        "loadtest",
    ]
    .iter()
    .flat_map(|dir| {
        let manifest = repo(&format!("{dir}/Cargo.toml"));
        manifest
            .lines()
            .skip_while(|l| l.trim() != "[[bin]]")
            .filter_map(|l| {
                l.strip_prefix("name = \"")
                    .and_then(|r| r.strip_suffix('"'))
                    .map(str::to_owned)
            })
            .collect::<Vec<_>>()
    })
    .collect()
}

#[test]
fn compose_has_the_prd_topology() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["redis", "mock-api", "admin", "supervisor", "gateway"])
    );
    for backend in ["admin", "supervisor", "gateway"] {
        let service = &services[backend];
        assert_eq!(
            service["environment"]["REDIS_URL"], "redis://redis:6379",
            "{backend} talks to the redis service"
        );
        assert!(
            service["depends_on"]["redis"].is_object(),
            "{backend} depends_on redis"
        );
    }
    assert_eq!(
        services["supervisor"]["environment"]["MCP_SUPERVISOR_ENABLED"],
        "true"
    );
    let gateway_ports: Vec<&str> = services["gateway"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        gateway_ports.contains(&"8080:8080"),
        "the gateway is the published front door"
    );
    assert!(
        services["redis"]["volumes"][0]
            .as_str()
            .expect("volume")
            .ends_with(":/data"),
        "redis persists its data"
    );
}

#[test]
fn compose_commands_name_binaries_the_image_holds() {
    let binaries = workspace_binaries();
    let dockerfile = repo("Dockerfile");
    // The profile the image builds: `--profile NAME` (defined in Cargo.toml) or `--release`.
    let profile = match dockerfile.split_once("cargo build --profile ") {
        Some((_, rest)) => rest
            .split_whitespace()
            .next()
            .expect("a profile name")
            .to_owned(),
        None => {
            assert!(
                dockerfile.contains("cargo build --release"),
                "the Dockerfile builds with cargo"
            );
            "release".to_owned()
        }
    };
    if profile != "release" {
        assert!(
            repo("Cargo.toml").contains(&format!("[profile.{profile}]")),
            "the Dockerfile builds profile {profile}, which Cargo.toml does not define"
        );
    }
    for (name, service) in compose()["services"].as_object().expect("services") {
        if name == "redis" {
            continue;
        }
        assert_eq!(service["build"], ".", "{name} builds the hub image");
        let command = service["command"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has a command"));
        assert!(
            binaries.contains(command),
            "{name} runs {command}, which no crate builds ({binaries:?})"
        );
        assert!(
            dockerfile.contains(&format!("target/{profile}/{command}")),
            "the Dockerfile does not copy {command} from target/{profile}"
        );
    }
}

#[test]
fn env_example_parses_and_names_the_prd_variables() {
    let text = repo("conf/hub.env.example");
    let vars: BTreeSet<String> = dotenvy::from_read_iter(text.as_bytes())
        .map(|item| item.expect("valid .env line").0)
        .collect();
    for required in [
        "REDIS_URL",
        "MCP_WORKER_BASE_PORT",
        "MCP_WORKER_MAX",
        "MCP_WORKER_IDLE_TTL",
        "MCP_SUPERVISOR_ENABLED",
    ] {
        assert!(
            vars.contains(required),
            "{required} missing from conf/hub.env.example"
        );
    }
    let readme = repo("README.md");
    for var in &vars {
        assert!(
            readme.contains(&format!("`{var}`")),
            "{var} is not in the README's configuration table"
        );
    }
}

#[test]
fn every_environment_variable_the_code_reads_is_documented() {
    let readme = repo("README.md");
    let mut missing = Vec::new();
    for dir in [
        "core",
        "admin-api",
        "gateway",
        "supervisor",
        "worker",
        "testkit",
        "loadtest",
    ] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir)
            .join("src");
        let mut stack = vec![root];
        while let Some(path) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for piece in text.split("env = \"").skip(1) {
                        let name: String = piece
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'
                            })
                            .collect();
                        if !name.is_empty() && !readme.contains(&format!("`{name}`")) {
                            missing.push(format!("{name} ({})", path.display()));
                        }
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in the README's configuration table: {missing:?}"
    );
}
