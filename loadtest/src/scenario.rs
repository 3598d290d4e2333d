//! Owns the scenario file (YAML or JSON): which servers a run targets, which tools with
//! which arguments, and their weights; and the `Plan` compiled from it, which picks the
//! request for each arrival without allocating more than the body it sends.
//!
//! ```yaml
//! name: prd
//! mode: call                       # call: POST /mcp/{id}/{tool}; mcp: tools/call over /mcp-servers/{id}/mcp
//! servers: {prefix: bench_, count: 20}   # bench_00 .. bench_19 (or a list: [fruits_api])
//! requests:
//!   - tool: get_fruit_by_id
//!     weight: 4
//!     args: [{id: 1}, {id: 2}, {id: 3}]   # one object, or a list to choose from
//!   - tool: get_fruits
//!     args: {}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The hub call protocol: `POST /mcp/{id}/{tool}`, SSE back.
    #[default]
    Call,
    /// MCP Streamable HTTP `tools/call` on `/mcp-servers/{id}/mcp`, in sessions.
    Mcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mode: Mode,
    pub servers: Servers,
    pub requests: Vec<RequestSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Servers {
    List(Vec<String>),
    /// `{prefix}{i}` for `i` in `0..count`, zero-padded to `width` digits (default: as
    /// many as `count - 1` has).
    Pattern {
        prefix: String,
        count: usize,
        #[serde(default)]
        width: Option<usize>,
    },
}

impl Servers {
    pub fn ids(&self) -> Vec<String> {
        match self {
            Servers::List(ids) => ids.clone(),
            Servers::Pattern {
                prefix,
                count,
                width,
            } => {
                let width = width.unwrap_or_else(|| count.saturating_sub(1).to_string().len());
                (0..*count)
                    .map(|i| format!("{prefix}{i:0width$}"))
                    .collect()
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub tool: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub args: Args,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Args {
    One(serde_json::Map<String, Value>),
    Choices(Vec<serde_json::Map<String, Value>>),
}

impl Default for Args {
    fn default() -> Args {
        Args::One(serde_json::Map::new())
    }
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if scenario.servers.ids().is_empty() {
            return Err("servers: at least one server".into());
        }
        if scenario.requests.is_empty() {
            return Err("requests: at least one request".into());
        }
        for spec in &scenario.requests {
            if spec.weight == 0 {
                return Err(format!(
                    "requests: {}: weight must be at least 1",
                    spec.tool
                ));
            }
            if matches!(&spec.args, Args::Choices(c) if c.is_empty()) {
                return Err(format!("requests: {}: args: an empty list", spec.tool));
            }
        }
        Ok(scenario)
    }

    /// The same requests against other servers (the suite points one scenario at the
    /// servers it registered).
    pub fn with_servers(mut self, servers: Vec<String>) -> Scenario {
        self.servers = Servers::List(servers);
        self
    }
}

/// What one arrival sends.
pub struct Pick<'a> {
    pub server_idx: usize,
    pub spec_idx: usize,
    pub tool: &'a str,
    pub args: &'a Value,
    /// `{"args": ...}`, serialized once per argument choice.
    pub call_body: Bytes,
}

/// A scenario compiled for sending: bodies serialized once, weights cumulated.
pub struct Plan {
    pub name: String,
    pub mode: Mode,
    pub servers: Vec<String>,
    specs: Vec<CompiledSpec>,
    /// `cumulative[i]` = sum of the weights of specs `0..=i`.
    cumulative: Vec<u64>,
}

struct CompiledSpec {
    tool: String,
    args: Vec<Value>,
    call_bodies: Vec<Bytes>,
}

impl Plan {
    pub fn new(scenario: Scenario) -> Plan {
        let mut cumulative = Vec::with_capacity(scenario.requests.len());
        let mut sum = 0u64;
        let specs = scenario
            .requests
            .into_iter()
            .map(|spec| {
                sum += u64::from(spec.weight);
                cumulative.push(sum);
                let args: Vec<Value> = match spec.args {
                    Args::One(map) => vec![Value::Object(map)],
                    Args::Choices(list) => list.into_iter().map(Value::Object).collect(),
                };
                let call_bodies = args
                    .iter()
                    .map(|a| Bytes::from(json!({"args": a}).to_string()))
                    .collect();
                CompiledSpec {
                    tool: spec.tool,
                    args,
                    call_bodies,
                }
            })
            .collect();
        Plan {
            name: scenario.name,
            mode: scenario.mode,
            servers: scenario.servers.ids(),
            specs,
            cumulative,
        }
    }

    pub fn tools(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|s| s.tool.as_str())
    }

    /// The request for arrival `k`: servers in turn (an even spread), the tool by
    /// weight and the argument choice drawn from `rng`.
    pub fn pick(&self, k: u64, rng: &mut impl Rng) -> Pick<'_> {
        let server_idx = (k % self.servers.len() as u64) as usize;
        let total = self.cumulative.last().copied().unwrap_or(1);
        let ticket = rng.random_range(0..total);
        let spec_idx = self.cumulative.partition_point(|&c| c <= ticket);
        let spec = &self.specs[spec_idx];
        let choice = rng.random_range(0..spec.args.len());
        Pick {
            server_idx,
            spec_idx,
            tool: &spec.tool,
            args: &spec.args[choice],
            call_body: spec.call_bodies[choice].clone(),
        }
    }

    /// The weights as fractions, for the report.
    pub fn mix(&self) -> BTreeMap<String, f64> {
        let total = self.cumulative.last().copied().unwrap_or(1) as f64;
        let mut previous = 0;
        let mut mix = BTreeMap::new();
        for (spec, &c) in self.specs.iter().zip(&self.cumulative) {
            *mix.entry(spec.tool.clone()).or_insert(0.0) += (c - previous) as f64 / total;
            previous = c;
        }
        mix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const PRD: &str = r#"
name: prd
servers: {prefix: bench_, count: 20}
requests:
  - tool: get_fruit_by_id
    weight: 3
    args: [{id: 1}, {id: 2}]
  - tool: get_fruits
"#;

    #[test]
    fn a_scenario_file_compiles_to_a_plan() {
        let plan = Plan::new(Scenario::parse(PRD).expect("parses"));
        assert_eq!(plan.name, "prd");
        assert_eq!(plan.mode, Mode::Call);
        assert_eq!(plan.servers.len(), 20);
        assert_eq!(plan.servers[0], "bench_00");
        assert_eq!(plan.servers[19], "bench_19");
        assert_eq!(plan.mix()["get_fruit_by_id"], 0.75);
        assert_eq!(plan.mix()["get_fruits"], 0.25);
    }

    #[test]
    fn picks_spread_over_servers_and_follow_the_weights() {
        let plan = Plan::new(Scenario::parse(PRD).expect("parses"));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut per_server = [0u32; 20];
        let mut by_id = 0;
        let mut ids = std::collections::BTreeSet::new();
        let n = 40_000;
        for k in 0..n {
            let pick = plan.pick(k, &mut rng);
            per_server[pick.server_idx] += 1;
            if pick.tool == "get_fruit_by_id" {
                by_id += 1;
                ids.insert(pick.args["id"].as_u64().expect("id"));
                let body: Value = serde_json::from_slice(&pick.call_body).expect("json");
                assert_eq!(&body["args"], pick.args);
            } else {
                assert_eq!(pick.call_body.as_ref(), br#"{"args":{}}"#);
            }
        }
        assert!(per_server.iter().all(|&c| c == 2000), "{per_server:?}");
        let share = by_id as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.01, "{share}");
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        for (text, expected) in [
            ("servers: []\nrequests: [{tool: a}]", "at least one server"),
            ("servers: [a]\nrequests: []", "at least one request"),
            ("servers: [a]\nrequests: [{tool: a, weight: 0}]", "weight"),
            (
                "servers: [a]\nrequests: [{tool: a, args: []}]",
                "empty list",
            ),
            ("servers: [a]\nrequests: [{tool: a}]\nmode: grpc", "grpc"),
            ("servers: [a]\nrequests: [{tool: a, wieght: 2}]", "wieght"),
        ] {
            let err = Scenario::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn explicit_server_lists_and_widths() {
        let s = Servers::Pattern {
            prefix: "s".into(),
            count: 3,
            width: Some(3),
        };
        assert_eq!(s.ids(), ["s000", "s001", "s002"]);
        let s = Servers::Pattern {
            prefix: "s".into(),
            count: 200,
            width: None,
        };
        assert_eq!(s.ids()[7], "s007");
        let scenario = Scenario::parse("servers: [fruits_api]\nrequests: [{tool: get_fruits}]")
            .expect("parses");
        assert_eq!(scenario.servers.ids(), ["fruits_api"]);
    }
}
