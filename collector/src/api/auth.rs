//! Credentials and what they may do: agent tokens and node certificates may
//! only ingest (as the agent names they are bound to: a token's patterns, a
//! certificate's DNS names); admin tokens may read and manage, never ingest;
//! metrics tokens may only read /metrics (Prometheus). What each request
//! needs and the refusal in words are here too (`Need`). Secrets are
//! compared in constant time and never shown.

use crate::api::peer::NodeCert;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::sync::Arc;

/// What a credential may do: the roles never mix (an agent cannot read,
/// an admin cannot ingest, a metrics token can do nothing but /metrics).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub enum Role {
    Agent,
    Admin,
    Metrics,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Metrics => "metrics",
        }
    }

    /// What this role may do, for refusals.
    fn may(self) -> &'static str {
        match self {
            Role::Agent => "an agent credential may only send results",
            Role::Admin => "an admin token may read and manage, not send results",
            Role::Metrics => "a metrics token may only read /metrics",
        }
    }
}

/// What a request needs of its caller.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Need {
    /// An agent or an admin credential (`whoami`).
    AgentOrAdmin,
    /// An agent credential: sending results, fleet leases.
    Agent,
    /// An admin token: reading runs, managing fleet runs.
    Admin,
    /// A metrics or admin token: `/metrics` with `--protect-metrics`.
    Metrics,
}

impl Need {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Need::AgentOrAdmin => role != Role::Metrics,
            Need::Agent => role == Role::Agent,
            Need::Admin => role == Role::Admin,
            Need::Metrics => matches!(role, Role::Admin | Role::Metrics),
        }
    }

    /// The 403's words for `role`, when this need does not allow it: what
    /// the role may do, then what this needs.
    pub fn refusal(self, role: Role) -> Option<String> {
        let needs = match self {
            Need::AgentOrAdmin => "this needs an agent or admin credential",
            Need::Agent => {
                "sending results and fleet leases need an agent token or a node certificate"
            }
            Need::Admin => "this needs an admin token",
            Need::Metrics => "/metrics needs a metrics or admin token",
        };
        (!self.allows(role)).then(|| format!("{}; {needs}", role.may()))
    }

    /// Whether its requests are written to the audit log, whoever asks:
    /// what only admins (or, for /metrics, metrics tokens) may do.
    pub fn audited(self) -> bool {
        matches!(self, Need::Admin | Need::Metrics)
    }
}

/// Who is asking, by the token or the node certificate it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// A metrics token (Prometheus): /metrics only.
    Metrics,
    /// The index of its token among the agent tokens.
    Agent(usize),
    /// A node certificate verified against `serve --client-ca`.
    Node(Arc<NodeCert>),
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::Admin => Role::Admin,
            Caller::Metrics => Role::Metrics,
            Caller::Agent(_) | Caller::Node(_) => Role::Agent,
        }
    }
}

/// An agent token, optionally bound to the agent names it may send as
/// (token file line: `TOKEN node-*,ctl1`), so one node's token cannot
/// write another node's results.
pub struct AgentToken {
    secret: String,
    /// The patterns as written (for messages) and compiled; None: any agent.
    agents: Option<(Vec<String>, GlobSet)>,
}

impl AgentToken {
    /// A token file line; an error never shows the secret (the caller
    /// names the line).
    pub fn parse(line: &str) -> Result<AgentToken, String> {
        let mut words = line.split_whitespace();
        let secret = words.next().unwrap_or_default().to_string();
        let agents = words.next().map(|list| {
            list.split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        });
        if words.next().is_some() || agents.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(
                "write TOKEN or TOKEN name,name-* (one space, names separated by commas)".into(),
            );
        }
        let agents = match agents {
            None => None,
            Some(patterns) => {
                let mut set = GlobSetBuilder::new();
                for p in &patterns {
                    set.add(Glob::new(p).map_err(|e| format!("{p:?}: {e}"))?);
                }
                let set = set.build().map_err(|e| e.to_string())?;
                Some((patterns, set))
            }
        };
        Ok(AgentToken { secret, agents })
    }

    /// Whether this token may send as `agent` (`*` in a pattern matches any
    /// run of characters; agent names hold no other glob characters).
    fn allows(&self, agent: &str) -> bool {
        self.agents
            .as_ref()
            .is_none_or(|(_, set)| set.is_match(agent))
    }
}

/// Every token the collector accepts.
pub struct Tokens {
    agent: Vec<AgentToken>,
    admin: Vec<String>,
    metrics: Vec<String>,
}

impl Tokens {
    pub fn new(agent: Vec<AgentToken>, admin: Vec<String>, metrics: Vec<String>) -> Tokens {
        Tokens {
            agent,
            admin,
            metrics,
        }
    }

    /// The caller a bearer token makes, if it is one of ours, and its label for the audit log (`admin token 2`: its
    /// place among the admin tokens, never the secret). Every token is
    /// compared, each in time that depends only on the presented one.
    pub fn identify(&self, bearer: &str) -> Option<(Caller, String)> {
        let mut found = None;
        for (i, t) in self.agent.iter().enumerate() {
            if same_secret(&t.secret, bearer) {
                found = found.or(Some((Caller::Agent(i), format!("agent token {}", i + 1))));
            }
        }
        for (i, t) in self.metrics.iter().enumerate() {
            if same_secret(t, bearer) {
                found = Some((Caller::Metrics, format!("metrics token {}", i + 1)));
            }
        }
        // The same secret in two files is its most powerful role.
        for (i, t) in self.admin.iter().enumerate() {
            if same_secret(t, bearer) {
                found = Some((Caller::Admin, format!("admin token {}", i + 1)));
            }
        }
        found
    }

    /// An agent credential bound to names may only send as those agents
    /// (unbound agent tokens may send as any); the refusal in words. Admins
    /// never reach this: ingest needs the agent role.
    pub fn may_send_as(&self, caller: &Caller, agent: &str) -> Result<(), String> {
        let i = match caller {
            Caller::Agent(i) => *i,
            Caller::Node(cert) if cert.allows(agent) => return Ok(()),
            Caller::Node(cert) => {
                return Err(format!(
                    "this node certificate may only send as {}, not as {agent:?}",
                    cert.names.join(", ")
                ));
            }
            Caller::Admin => return Err("an admin token cannot send results".into()),
            Caller::Metrics => return Err("a metrics token cannot send results".into()),
        };
        let t = &self.agent[i];
        if t.allows(agent) {
            return Ok(());
        }
        let names = t.agents.as_ref().map(|(p, _)| p.join(", "));
        Err(format!(
            "this token may only send as {}, not as {agent:?}",
            names.unwrap_or_default()
        ))
    }
}

/// Equal secrets, in time that depends only on the length of `given` (the
/// caller's own): neither where the first difference is nor the secret's
/// length shows in the answer's timing.
fn same_secret(secret: &str, given: &str) -> bool {
    let (s, g) = (secret.as_bytes(), given.as_bytes());
    if s.is_empty() {
        return false;
    }
    let mut diff = (s.len() ^ g.len()) as u64;
    for (i, b) in g.iter().enumerate() {
        diff |= u64::from(s[i % s.len()] ^ b);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "secret-0123456789abcdef";
    const METRICS: &str = "metrics-0123456789abcdef";

    #[test]
    fn agent_name_patterns() {
        for (p, name, ok) in [
            ("node-a", "node-a", true),
            ("node-a", "node-ab", false),
            ("node-*", "node-a", true),
            ("node-*", "node-", true),
            ("node-*", "nodes", false),
            ("*-ctl", "eu1-ctl", true),
            ("*-ctl", "eu1-ctl2", false),
            ("eu*-cmp*", "eu1-cmp07", true),
            ("eu*-cmp*", "eu1-ctl07", false),
            ("a*a", "a", false),
            ("*", "anything", true),
            ("node.*", "node.eu:1@x", true),
        ] {
            let t = AgentToken::parse(&format!("{SECRET} {p}")).unwrap();
            assert_eq!(t.allows(name), ok, "{p} vs {name}");
        }
    }

    #[test]
    fn token_lines() {
        let t = AgentToken::parse(&format!("{SECRET} node-*,ctl1")).unwrap();
        assert!(t.allows("node-7") && t.allows("ctl1") && !t.allows("ctl2"));
        assert!(AgentToken::parse(SECRET).unwrap().allows("x"));
        assert!(AgentToken::parse(&format!("{SECRET} a b")).is_err());
        assert!(AgentToken::parse(&format!("{SECRET} ,")).is_err());
        let err = AgentToken::parse(&format!("{SECRET} node-["))
            .err()
            .unwrap();
        assert!(err.starts_with("\"node-[\""), "{err}");
        assert!(!err.contains("secr"), "{err}");
    }

    #[test]
    fn callers_by_token() {
        let admin = "admin-0123456789abcdef".to_string();
        let tokens = Tokens::new(
            vec![AgentToken::parse(&format!("{SECRET} ctl1")).unwrap()],
            vec![admin.clone()],
            vec![METRICS.into()],
        );
        assert_eq!(tokens.identify(&admin).unwrap().0, Caller::Admin);
        let agent = tokens.identify(SECRET).unwrap().0;
        assert_eq!(agent, Caller::Agent(0));
        for wrong in [
            "",
            "secret",
            "secret-0123456789abcdeF",
            "secret-0123456789abcdefsecret-",
        ] {
            assert!(tokens.identify(wrong).is_none(), "{wrong:?}");
        }
        assert!(tokens.may_send_as(&agent, "ctl1").is_ok());
        let err = tokens.may_send_as(&agent, "ctl2").unwrap_err();
        assert_eq!(err, "this token may only send as ctl1, not as \"ctl2\"");
        assert!(tokens.may_send_as(&Caller::Admin, "ctl2").is_err());
        assert_eq!(tokens.identify(&admin).unwrap().1, "admin token 1");
        assert_eq!(tokens.identify(SECRET).unwrap().1, "agent token 1");
        let metrics = tokens.identify(METRICS).unwrap();
        assert_eq!(metrics, (Caller::Metrics, "metrics token 1".into()));
        assert!(tokens.may_send_as(&metrics.0, "ctl1").is_err());
    }

    #[test]
    fn each_need_allows_its_roles_and_refuses_the_others_in_words() {
        use Role::*;
        for (need, allowed) in [
            (Need::AgentOrAdmin, [true, true, false]),
            (Need::Agent, [true, false, false]),
            (Need::Admin, [false, true, false]),
            (Need::Metrics, [false, true, true]),
        ] {
            for (role, ok) in [Agent, Admin, Metrics].into_iter().zip(allowed) {
                assert_eq!(need.allows(role), ok, "{need:?} {role:?}");
                assert_eq!(need.refusal(role).is_none(), ok, "{need:?} {role:?}");
            }
        }
        assert_eq!(
            Need::Admin.refusal(Metrics).unwrap(),
            "a metrics token may only read /metrics; this needs an admin token"
        );
        assert_eq!(
            Need::Metrics.refusal(Agent).unwrap(),
            "an agent credential may only send results; /metrics needs a metrics or admin token"
        );
    }

    #[test]
    fn node_certificates_send_only_as_their_names() {
        let tokens = Tokens::new(vec![], vec![], vec![]);
        let node = Caller::Node(Arc::new(NodeCert {
            names: vec!["ctl9".into(), "ctl9.example".into()],
        }));
        assert_eq!(node.role(), Role::Agent);
        assert!(tokens.may_send_as(&node, "ctl9").is_ok());
        assert!(tokens.may_send_as(&node, "ctl9.example").is_ok());
        let err = tokens.may_send_as(&node, "ctl1").unwrap_err();
        assert_eq!(
            err,
            "this node certificate may only send as ctl9, ctl9.example, not as \"ctl1\""
        );
    }
}
