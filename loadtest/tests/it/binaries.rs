//! Every binary of the workspace answers `--help`, and refuses a bad flag with exit code
//! 2 and a short message, before binding anything.

const BINARIES: [&str; 6] = [
    "mcp-admin",
    "mcp-gateway",
    "mcp-supervisor",
    "mcp-worker",
    "mcp-mock-api",
    "mcp-loadtest",
];

#[test]
fn every_binary_has_help_and_refuses_bad_flags_with_exit_code_2() {
    for binary in BINARIES {
        let path = mcp_testkit::bin_path(binary);
        let help = std::process::Command::new(&path)
            .arg("--help")
            .env("MCP_ENV_FILE", "/nonexistent/.env")
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{binary} --help: {:?}", help.status);
        assert!(text.contains("Usage:"), "{binary} --help: {text}");

        let bad = std::process::Command::new(&path)
            .arg("--no-such-flag")
            .env("MCP_ENV_FILE", "/nonexistent/.env")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{binary}: {err}");
        assert!(err.contains("--no-such-flag"), "{binary}: {err}");
    }
}
