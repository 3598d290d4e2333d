//! Owns configuration plumbing every binary shares: `.env` loading, the Redis and log
//! arguments, and turning a bad configuration into one clear line and exit code 2.
//! Each binary's own `Config` derives `clap::Parser` and flattens these.

use std::time::Duration;

use clap::{Args, Parser};

use crate::keys::Keys;
use crate::registry::{RedisRegistry, Timeouts};

/// Loads `.env` from the working directory when there is one (the environment wins),
/// then parses the binary's configuration. `--help` and `--version` print and exit 0;
/// anything invalid prints one line and exits 2, before any port is bound.
pub fn parse<C: Parser>(binary: &str) -> C {
    if let Err(err) = load_dotenv() {
        eprintln!("{binary}: invalid configuration: {err}");
        std::process::exit(2);
    }
    match C::try_parse() {
        Ok(config) => config,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            let rendered = err.to_string();
            let line = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "{binary}: invalid configuration: {}",
                line.trim_start_matches("error: ")
            );
            std::process::exit(2);
        }
    }
}

/// Reads `.env` (or the file named by `MCP_ENV_FILE`) into the environment without
/// overriding variables that are already set.
pub fn load_dotenv() -> Result<(), String> {
    let result = match std::env::var_os("MCP_ENV_FILE") {
        Some(path) => dotenvy::from_path(&path).map(|_| ()),
        None => dotenvy::dotenv().map(|_| ()),
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(err) => Err(format!("reading .env: {err}")),
    }
}

/// Where the shared registry lives.
#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// Redis holding the registry: redis://[user][:password@]host[:port][/db], or
    /// redis+sentinel://[user][:password@]host1:26379,host2:26379/master_name[/db]
    /// [?sentinel_username=..&sentinel_password=..&min_replicas=1], or
    /// redis+cluster://[user][:password@]host1:6379,host2:6379. Checked while the
    /// configuration is parsed, so a malformed URL stops every binary before it binds.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = RedisUrlParser)]
    pub redis_url: String,
    /// Prefix of every Redis key and channel, so several hubs or tests can share a Redis.
    #[arg(long, env = "MCP_KEY_PREFIX", default_value = Keys::DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub key_prefix: String,
    /// Time a Redis call may take before it fails as unavailable, in milliseconds.
    #[arg(long, env = "MCP_REDIS_TIMEOUT_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub redis_timeout_ms: u64,
}

fn parse_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_end_matches(':');
    if trimmed.is_empty()
        || trimmed.len() > 64
        || trimmed
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'*')
    {
        return Err("must be 1 to 64 characters without spaces or *".into());
    }
    Ok(trimmed.to_owned())
}

/// Whether `url` is a Redis URL the registry client accepts (every form of
/// [`crate::connection::Target::parse`]). Nothing is connected. The message never
/// repeats the URL, which may hold a password.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    crate::connection::Target::parse(url).map(|_| ()).map_err(|reason| {
        format!("REDIS_URL is not a valid Redis URL (expected redis://[:password@]host[:port][/db], redis+sentinel://host:26379,.../master_name[/db] or redis+cluster://host:6379,...): {reason}")
    })
}

/// Runs [`check_redis_url`] inside clap, for the flag and the environment variable alike,
/// with an error that does not echo the value.
#[derive(Clone)]
struct RedisUrlParser;

impl clap::builder::TypedValueParser for RedisUrlParser {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use clap::error::ErrorKind;
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(ErrorKind::InvalidUtf8, "REDIS_URL is not valid UTF-8\n")
        })?;
        check_redis_url(text).map_err(|message| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n"))
        })?;
        Ok(text.to_owned())
    }
}

impl RedisArgs {
    /// The key layout; on a cluster the prefix is a hash tag, as [`RedisRegistry::new`]
    /// makes it.
    pub fn keys(&self) -> Keys {
        let keys = Keys::new(&self.key_prefix);
        if self.redis_url.starts_with("redis+cluster://") {
            keys.with_hash_tag()
        } else {
            keys
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        let response = Duration::from_millis(self.redis_timeout_ms);
        Timeouts {
            connect: response.min(Duration::from_secs(1)),
            response,
        }
    }

    /// The registry client; fails only on a malformed URL (it connects lazily).
    pub fn registry(&self) -> anyhow::Result<RedisRegistry> {
        use anyhow::Context;
        RedisRegistry::new(&self.redis_url, self.keys(), self.timeouts()).context("REDIS_URL")
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for Kibana, Datadog, jq).
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

/// How a binary logs.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    #[arg(long, env = "MCP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Level filter in `RUST_LOG` syntax, e.g. `info` or `info,pingora=warn`.
    #[arg(long, env = "MCP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Fraction of success-path events (accepted, proxy, HTTP) that are logged, 0 to 1.
    /// Errors are never sampled away.
    #[arg(long, env = "MCP_LOG_SAMPLE", default_value_t = 1.0, value_parser = parse_fraction)]
    pub log_sample: f64,
}

/// `250ms`, `5s`, `2m`, `1h`, or a bare number of seconds (fractions allowed), up to a week.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    if !(0.0..=7.0 * 86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    let fraction: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err("must be between 0 and 1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Test {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        log: LogArgs,
    }

    #[tokio::test]
    async fn defaults_work_on_a_laptop() {
        let t = Test::try_parse_from(["t"]).expect("defaults parse");
        assert_eq!(t.redis.keys().servers(), "mcp:servers");
        assert_eq!(t.log.log_format, LogFormat::Json);
        assert!(t.redis.registry().is_ok());
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[tokio::test]
    async fn bad_values_are_refused() {
        assert!(Test::try_parse_from(["t", "--log-sample", "2"]).is_err());
        assert!(Test::try_parse_from(["t", "--key-prefix", "a b"]).is_err());
        assert!(Test::try_parse_from(["t", "--redis-timeout-ms", "0"]).is_err());
        for bad in [
            "nope://x",
            "not-a-url",
            "127.0.0.1:6379",
            "redis://:hunter2@0.0.0.0:6379",
            "redis://h/not-a-db",
            "redis+sentinel://:hunter2@h1:26379",
            "redis+cluster://:hunter2@h1/5",
        ] {
            let err = Test::try_parse_from(["t", "--redis-url", bad]).expect_err(bad);
            let text = err.to_string();
            assert!(
                text.contains("REDIS_URL is not a valid Redis URL"),
                "{bad}: {text}"
            );
            assert!(!text.contains("hunter2"), "the password is echoed: {text}");
        }
        for good in [
            "redis://127.0.0.1:6379/2",
            "redis://:p%40ss@redis:6380",
            "unix:///tmp/r.sock",
            "redis+sentinel://:p%40ss@s1:26379,s2:26379,s3/mymaster/0?sentinel_password=x",
            "redis+cluster://n1:7000,n2:7001",
        ] {
            let t = Test::try_parse_from(["t", "--redis-url", good]).expect(good);
            assert!(t.redis.registry().is_ok(), "{good}");
        }
    }
}
