//! Owns the one-shot subcommands (`import`, `export`, `openapi-import`) and the start-up seed. They talk to
//! Redis directly, so `export` includes secrets: whoever can run it can read Redis.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use mcp_core::document::Document;
use mcp_core::registry::ImportMode;
use mcp_core::RedisRegistry;

use crate::config::{Config, ExportArgs, ImportArgs, OpenapiImportArgs};

/// Reads and validates a document; every problem on its own line in the error.
pub fn read_document(path: &Path, origin: Option<&url::Url>) -> anyhow::Result<Document> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut doc = match Document::parse(value) {
        Ok(doc) => doc,
        Err(problems) => {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("  {}: {}", p.field, p.message))
                .collect();
            bail!(
                "{} is not a valid registry document:\n{}",
                path.display(),
                lines.join("\n")
            );
        }
    };
    if let Some(origin) = origin {
        doc.rebase_origin(origin);
    }
    Ok(doc)
}

pub async fn import(config: &Config, args: &ImportArgs) -> anyhow::Result<()> {
    let doc = read_document(&args.file, args.rebase_origin.as_ref())?;
    let registry = config.redis.registry()?;
    let summary = registry
        .import(&doc, args.mode.into())
        .await
        .context("importing into redis")?;
    tracing::info!(
        event = "admin.import",
        servers = summary.servers,
        tools = summary.tools,
        removed_servers = summary.removed_servers,
        removed_tools = summary.removed_tools
    );
    Ok(())
}

/// `mcp-admin openapi-import FILE --server ID`: the same import as
/// `POST /api/servers/{id}/openapi`, straight into Redis; prints its report (JSON).
pub async fn openapi_import(config: &Config, args: &OpenapiImportArgs) -> anyhow::Result<()> {
    let bytes = if args.file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        bytes
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let doc = crate::openapi_import::parse_document(&bytes)
        .map_err(|err| anyhow::anyhow!("{}: {err}", args.file.display()))?;
    let registry = config.redis.registry()?;
    let options = crate::openapi_import::Options {
        tags: args.tags.clone(),
        operations: args.operations.clone(),
        prefix: args.prefix.clone(),
    };
    let target = crate::openapi_import::Target {
        server_id: args.server.clone(),
        base_url: args.base_url.clone(),
        mode: args.mode.into(),
        dry_run: args.dry_run,
    };
    let report = match crate::openapi_import::import(&registry, &doc, &options, &target).await {
        Ok(report) => report,
        Err(crate::error::ApiError::Invalid(problems)) => {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("  {}: {}", p.field, p.message))
                .collect();
            bail!(
                "{} cannot be imported:\n{}",
                args.file.display(),
                lines.join("\n")
            );
        }
        Err(err) => return Err(anyhow::anyhow!("{err}")),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).context("serializing")?
    );
    Ok(())
}

pub async fn export(config: &Config, args: &ExportArgs) -> anyhow::Result<()> {
    let registry = config.redis.registry()?;
    let doc = registry.export().await.context("reading the registry")?;
    let mut json = serde_json::to_string_pretty(&doc).context("serializing")?;
    json.push('\n');
    match &args.output {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{json}"),
    }
    Ok(())
}

/// Imports `path` when the registry holds no server, so demo data appears on a fresh
/// Redis but an operator's registry is never overwritten by a restart.
pub async fn seed_if_empty(
    registry: &RedisRegistry,
    path: &Path,
    origin: Option<&url::Url>,
) -> anyhow::Result<()> {
    let doc = read_document(path, origin)?;
    let existing = registry
        .list_servers()
        .await
        .context("reading the registry to seed it")?;
    if !existing.is_empty() {
        tracing::info!(
            event = "admin.seed.skipped",
            reason = "registry not empty",
            servers = existing.len()
        );
        return Ok(());
    }
    let summary = registry
        .import(&doc, ImportMode::Merge)
        .await
        .context("seeding the registry")?;
    tracing::info!(event = "admin.seed", file = %path.display(), servers = summary.servers, tools = summary.tools);
    Ok(())
}
