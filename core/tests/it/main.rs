//! Integration tests of the shared crate against a real `redis-server`.

mod audit;
mod cluster;
mod deployment;
mod registry;
mod sentinel;
mod subscription;

use mcp_core::keys::Keys;
use mcp_core::registry::Timeouts;
use mcp_core::RedisRegistry;
use mcp_testkit::RedisServer;

/// A registry test case, run on whichever Redis the registry it is given talks to.
pub type Case =
    fn(RedisRegistry) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A fresh Redis and a registry on a unique prefix.
pub fn setup() -> (RedisServer, RedisRegistry) {
    let redis = RedisServer::start();
    let registry = RedisRegistry::new(
        &redis.url(),
        Keys::new(&mcp_testkit::unique_prefix()),
        Timeouts::default(),
    )
    .expect("registry");
    (redis, registry)
}

pub fn demo_document() -> mcp_core::document::Document {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/demo-registry.json"
    ))
    .expect("demo data");
    mcp_core::document::Document::parse(serde_json::from_str(&text).expect("json"))
        .expect("demo data is valid")
}
