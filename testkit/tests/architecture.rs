//! The claims of docs/ARCHITECTURE.md that can be checked from the source, checked: the
//! map names every crate and every source file, the binaries' shared start-up, the Lua
//! scripts that read undeclared keys, the supervisor's record writers, and which crates
//! write what to Redis. A failure says what to change in the map (or in the code).

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", root()))
        .unwrap_or_else(|err| panic!("reading {path}: {err}"))
}

fn map() -> String {
    read("docs/ARCHITECTURE.md")
}

/// The workspace members, from the root Cargo.toml's `members = [...]`.
fn members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let start = manifest.find("members").expect("a members list");
    let list = &manifest[start..];
    let list = &list[list.find('[').expect("[") + 1..list.find(']').expect("]")];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The text of the map's section whose heading starts with `### \`{dir}/\``, up to the
/// next heading of the same or a higher level.
fn section<'a>(map: &'a str, dir: &str) -> Option<&'a str> {
    let heading = format!("### `{dir}/`");
    let start = map.find(&heading)?;
    let rest = &map[start + heading.len()..];
    let end = [rest.find("\n### "), rest.find("\n## ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Files under `dir` (relative to the repository) with one of `exts`: the ones git
/// tracks when this is a git checkout (a file someone has not committed yet is not
/// part of the code the map describes), else every file on disk.
fn files_under(dir: &str, exts: &[&str]) -> Vec<String> {
    let tracked = std::process::Command::new("git")
        .args(["ls-files", "--", dir])
        .current_dir(root())
        .output()
        .ok()
        .filter(|out| out.status.success() && !out.stdout.is_empty())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    let all = tracked.unwrap_or_else(|| {
        let mut found = Vec::new();
        walk(&Path::new(root()).join(dir), dir, &mut found);
        found
    });
    let mut files: Vec<String> = all
        .into_iter()
        .filter(|f| exts.iter().any(|ext| f.ends_with(ext)))
        .collect();
    files.sort();
    files
}

fn walk(path: &Path, rel: &str, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{rel}/{name}");
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), &rel, found);
        } else {
            found.push(rel);
        }
    }
}

/// The source of `file` without its `#[cfg(test)]` module (unit tests may do what the
/// product code must not).
fn product_code(file: &str) -> String {
    let text = read(file);
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[test]
fn the_map_names_every_crate_and_every_source_file() {
    let map = map();
    let mut missing = Vec::new();
    for dir in members() {
        let Some(section) = section(&map, &dir) else {
            missing.push(format!("a section `### `{dir}/`` for the crate in {dir}/"));
            continue;
        };
        for file in files_under(&format!("{dir}/src"), &[".rs"]) {
            let rel = file.trim_start_matches(&format!("{dir}/src/")).to_owned();
            if !section.contains(&format!("`{rel}`")) {
                missing.push(format!("`{rel}` in the {dir}/ section ({file})"));
            }
        }
        for file in files_under(&format!("{dir}/benches"), &[".rs"]) {
            let rel = file.trim_start_matches(&format!("{dir}/")).to_owned();
            if !section.contains(&format!("`{rel}`")) {
                missing.push(format!("`{rel}` in the {dir}/ section ({file})"));
            }
        }
    }
    match section(&map, "frontend") {
        None => missing.push("a section `### `frontend/`` for the dashboard".into()),
        Some(section) => {
            let mut files = files_under("frontend/src/lib", &[".ts", ".tsx"]);
            files.extend(files_under("frontend/e2e", &[".ts"]));
            for file in files {
                let rel = file.trim_start_matches("frontend/").to_owned();
                if !section.contains(&format!("`{rel}`")) {
                    missing.push(format!("`{rel}` in the frontend/ section"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name (say what each is for, where it lives):\n  {}",
        missing.join("\n  ")
    );
}

/// `(name, path)` of every `[[bin]]` of the crate in `dir`.
fn binaries(dir: &str) -> Vec<(String, String)> {
    let manifest = read(&format!("{dir}/Cargo.toml"));
    let mut bins = Vec::new();
    for block in manifest.split("[[bin]]").skip(1) {
        let block = block.split("\n[").next().unwrap_or_default();
        let value = |key: &str| {
            block
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(key) && l[key.len()..].trim_start().starts_with('='))
                .and_then(|l| l.split('"').nth(1))
                .map(str::to_owned)
        };
        let name = value("name").expect("a [[bin]] has a name");
        let path = value("path").unwrap_or_else(|| "src/main.rs".into());
        bins.push((name, format!("{dir}/{path}")));
    }
    bins
}

/// The binaries that, as the map says, use neither the shared config parse nor the log
/// set-up.
const TOOLS: &[&str] = &["mcp-loadtest", "mcp-mock-api", "mcp-test-hub"];

#[test]
fn every_hub_binary_starts_through_the_shared_config_parse_and_log_init() {
    let map = map();
    let mut all = Vec::new();
    for dir in members() {
        all.extend(binaries(&dir));
    }
    assert!(all.len() >= 6, "found only {all:?}");
    for (name, path) in &all {
        assert!(
            map.contains(&format!("| `{name}` |")),
            "{name} is not in the map's table of entry points"
        );
        let main = read(path);
        let parse = main.find("mcp_core::config::parse(");
        let init = main.find("mcp_core::log::init(");
        if TOOLS.contains(&name.as_str()) {
            assert!(
                parse.is_none() && init.is_none(),
                "{name} ({path}) now uses mcp_core::config::parse or log::init: update the \
                 map's \"Entry points\" (and TOOLS here)"
            );
        } else {
            let (Some(parse), Some(init)) = (parse, init) else {
                panic!(
                    "{name} ({path}) must parse its config with mcp_core::config::parse and set \
                     up logs with mcp_core::log::init, as the map says (or the map must name it \
                     as an exception)"
                );
            };
            assert!(
                parse < init,
                "{name} sets up logs before parsing its config"
            );
        }
    }
}

/// The first argument of every `redis.call(...)` in `script` whose command takes a key
/// first (everything but `PUBLISH`, whose first argument is a channel).
fn key_arguments(script: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = script;
    while let Some(at) = rest.find("redis.call('") {
        rest = &rest[at + "redis.call('".len()..];
        let Some(end) = rest.find('\'') else { break };
        let command = &rest[..end];
        let args = rest[end + 1..].trim_start_matches([',', ' ']);
        let first = args.split([',', ')']).next().unwrap_or_default().trim();
        if command != "PUBLISH" {
            keys.push(first.to_owned());
        }
    }
    keys
}

/// Whether `line` starts a Rust item (a Lua line inside a script never does).
fn starts_item(line: &str) -> bool {
    const WORDS: &[&str] = &[
        "static",
        "const",
        "fn",
        "async",
        "impl",
        "struct",
        "enum",
        "use",
        "pub",
        "pub(crate)",
        "mod",
        "type",
        "trait",
    ];
    line.starts_with("#[")
        || line.starts_with("///")
        || line
            .split(' ')
            .next()
            .is_some_and(|word| WORDS.contains(&word))
}

/// `(name, body)` of every Lua script in `text`: each `LazyLock<Script>` static and each
/// `const NAME: &str` whose text calls Redis (the Lua shared by several scripts), the
/// body running to the next item, with the text of the consts it interpolates
/// (`{NAME}` in a `format!`) added.
fn scripts(text: &str) -> Vec<(String, String)> {
    let items = script_items(text);
    items
        .iter()
        .map(|(name, body)| {
            let mut full = body.clone();
            for (other, text) in &items {
                if other != name && body.contains(&format!("{{{other}}}")) {
                    full.push('\n');
                    full.push_str(text);
                }
            }
            (name.clone(), full)
        })
        .filter(|(_, body)| body.contains("redis.call("))
        .collect()
}

/// Every script-like item of `text` and its own body, before interpolation.
fn script_items(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_script = line.contains(": LazyLock<Script>")
            || (starts_item(line) && line.contains("const ") && line.contains(": &str"));
        if !is_script || !starts_item(line) {
            continue;
        }
        let name = line
            .split(':')
            .next()
            .and_then(|head| head.split_whitespace().last())
            .unwrap_or_default()
            .to_owned();
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !starts_item(l))
            .copied()
            .collect();
        found.push((name, body.join("\n")));
    }
    found
}

#[test]
fn every_lua_script_declares_its_keys_unless_the_map_names_it() {
    let mut all = BTreeSet::new();
    let mut undeclared = BTreeSet::new();
    for file in files_under("core/src", &[".rs"]) {
        for (name, body) in scripts(&read(&file)) {
            let keys = key_arguments(&body);
            assert!(!keys.is_empty(), "{name} in {file}: no redis.call found");
            if keys.iter().any(|k| !k.starts_with("KEYS[")) {
                undeclared.insert(name.clone());
            }
            all.insert(name);
        }
    }
    assert!(
        all.contains("UPSERT_SERVER") && all.contains("CLAIM_PORT"),
        "the scripts were not found: {all:?}"
    );
    let map = map();
    let core = section(&map, "core").expect("the core/ section");
    let named: BTreeSet<String> = all
        .iter()
        .filter(|name| core.contains(&format!("`{name}`")))
        .cloned()
        .collect();
    assert_eq!(
        named, undeclared,
        "the core/ section of docs/ARCHITECTURE.md says every Lua script declares in KEYS \
         each key it touches, naming (in backticks) the scripts that do not, and no other \
         script (left: named in the map, right: found in core/src); make the script declare \
         its keys, or name it in that invariant and say what it touches"
    );
}

/// The function around each call of one of `methods` in `text`.
fn enclosing_functions(text: &str, methods: &[&str]) -> BTreeSet<String> {
    let mut current = String::new();
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if let Some(at) = line.find("fn ") {
            let before = line[..at].trim();
            if before.is_empty() || before.ends_with("async") || before.starts_with("pub") {
                let name: String = line[at + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    current = name;
                }
            }
        }
        if methods.iter().any(|m| line.contains(&format!(".{m}("))) {
            found.insert(current.clone());
        }
    }
    found
}

const RECORD_WRITES: &[&str] = &[
    "put_worker_record",
    "remove_worker_record",
    "touch_worker_record",
];

#[test]
fn the_map_lists_every_supervisor_function_that_writes_a_runtime_record() {
    let map = map();
    let section = section(&map, "supervisor").expect("the supervisor/ section");
    let mut writers = BTreeSet::new();
    for file in files_under("supervisor/src", &[".rs"]) {
        writers.extend(enclosing_functions(&product_code(&file), RECORD_WRITES));
    }
    assert!(writers.contains("hold"), "writers not found: {writers:?}");
    let missing: Vec<_> = writers
        .iter()
        .filter(|f| !section.contains(&format!("`{f}`")) && !section.contains(&format!("::{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "supervisor functions that write runtime records but are not in the map's table of \
         record writes (say which check each write passes): {missing:?}"
    );
}

/// Which crates may call which writing methods of `RedisRegistry`, as the map says.
const WRITERS: &[(&[&str], &[&str])] = &[
    (
        &[
            "put_worker_record",
            "remove_worker_record",
            "touch_worker_record",
            "claim_port",
            "release_port",
            "acquire_lease",
            "release_lease",
            "supervisor_heartbeat",
            "remove_supervisor",
        ],
        &["supervisor"],
    ),
    (
        &[
            "upsert_server",
            "upsert_tool",
            "delete_server",
            "delete_tool",
            "request_restart",
            "import",
        ],
        &["admin-api"],
    ),
    (&["request_wake"], &["gateway"]),
];

#[test]
fn redis_is_written_only_by_the_crates_the_map_says() {
    let mut wrong = Vec::new();
    for dir in members().iter().filter(|d| *d != "core") {
        for file in files_under(&format!("{dir}/src"), &[".rs"]) {
            let code = product_code(&file);
            for (methods, allowed) in WRITERS {
                for method in *methods {
                    if code.contains(&format!(".{method}(")) && !allowed.contains(&dir.as_str()) {
                        wrong.push(format!("{file} calls {method}"));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/ARCHITECTURE.md says runtime records, ports and leases are written by \
         supervisor/ only, the registry by admin-api/ only and server.wake by the gateway: \
         {wrong:?}"
    );
}

#[test]
fn the_helpers_read_what_they_should() {
    assert_eq!(
        key_arguments("redis.call('HGET', KEYS[2], ARGV[2]) redis.call('PUBLISH', ARGV[1], x) redis.call('HVALS', ARGV[1] .. s[i])"),
        ["KEYS[2]", "ARGV[1] .. s[i]"]
    );
    let text = "impl X {\n    async fn hold(&mut self) {\n        self.r.put_worker_record(a, b)\n    }\n    fn other() {}\n    pub(crate) async fn sleep(&self) {\n        x.remove_worker_record(1)\n    }\n}\n";
    let found: Vec<_> = enclosing_functions(text, RECORD_WRITES)
        .into_iter()
        .collect();
    assert_eq!(found, ["hold", "sleep"]);
    let map = "## X\n### `core/` (c)\n`SNAPSHOT`\n### `adapter/`\nz\n## Y\n";
    assert_eq!(section(map, "core"), Some(" (c)\n`SNAPSHOT`"));
    assert_eq!(section(map, "adapter"), Some("\nz"));
    let text = "use x;\nstatic A: LazyLock<Script> = LazyLock::new(|| {\n    script(\n        r#\"\nif redis.call('GET', KEYS[1]) then\nend\n\"#,\n    )\n});\n\n/// B.\npub(crate) static B: LazyLock<Script> = x(r#\"\nredis.call('HSET', KEYS[1])\n\"#);\nconst HEAD: &str = r#\"\nlocal ids = redis.call('HKEYS', ARGV[1])\n\"#;\nconst NOT_LUA: &str = \"x\";\nimpl R {}\n";
    let found = scripts(text);
    let names: Vec<_> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["A", "B", "HEAD"]);
    assert_eq!(key_arguments(&found[0].1), ["KEYS[1]"]);
    assert_eq!(key_arguments(&found[2].1), ["ARGV[1]"]);
}
