//! API keys with roles and per-KB scopes. Keys are stored as SHA-256 hashes (never the key) and
//! never logged; a request without a valid key gets 401, a valid key outside its role or scope 403.

use crate::error::ApiError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Hotline agents: tickets, answers, search, classification, feedback.
    Agent,
    /// A chat integration (小莞): answers only.
    Integrator,
    /// Evaluators: answers, tickets, classification, search.
    Evaluator,
    /// Supervisors (班长/质检): everything an agent does, every agent's stored tickets, the
    /// analytics (hot issues, repeats, trends), deleting tickets.
    Supervisor,
    /// Reviewers (标注员): the review queue of unsure or corrected tickets, and its labels.
    Reviewer,
    /// Everything, including document upload, deletion and reindexing.
    Admin,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Answer,
    Tickets,
    Classify,
    Search,
    ReadKbs,
    Feedback,
    ManageKbs,
    /// Read any agent's stored tickets (an agent reads their own with `Tickets`).
    AllTickets,
    /// Hot issues, repeats, trends, 每周一题.
    Analytics,
    /// The review queue and confirmed labels.
    Review,
    /// Delete stored tickets (retention requests).
    DeleteTickets,
}

impl Role {
    pub fn may(self, a: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Agent => matches!(a, Answer | Tickets | Classify | Search | ReadKbs | Feedback),
            Role::Integrator => matches!(a, Answer | ReadKbs),
            Role::Evaluator => matches!(a, Answer | Tickets | Classify | Search | ReadKbs),
            Role::Supervisor => matches!(a, Answer | Tickets | Classify | Search | ReadKbs | Feedback | AllTickets | Analytics | DeleteTickets),
            Role::Reviewer => matches!(a, Classify | ReadKbs | Review),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub role: Role,
    /// Knowledge bases this key may see; ["*"] = all.
    #[serde(default = "all_kbs")]
    pub kbs: Vec<String>,
}

fn all_kbs() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub role: Role,
    pub kbs: Vec<String>,
}

impl Principal {
    /// Open mode (no keys configured, loopback only): everything allowed.
    pub fn open() -> Self {
        Self { key_id: "open".into(), role: Role::Admin, kbs: all_kbs() }
    }
    pub fn sees_all(&self) -> bool {
        self.kbs.iter().any(|k| k == "*")
    }
    pub fn sees(&self, kb: &str) -> bool {
        self.sees_all() || self.kbs.iter().any(|k| k == kb)
    }
    pub fn require(&self, a: Action) -> Result<(), ApiError> {
        if self.role.may(a) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("key '{}' (role {:?}) may not do this", self.key_id, self.role)))
        }
    }
    /// The KBs a request may use: the requested ones (all must be in scope) or the whole scope.
    pub fn scope(&self, requested: Option<&[String]>, served: &[String]) -> Result<Option<Vec<String>>, ApiError> {
        match requested.filter(|r| !r.is_empty()) {
            Some(r) => {
                if let Some(out) = r.iter().find(|k| !self.sees(k)) {
                    return Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{out}'", self.key_id)));
                }
                Ok(Some(r.to_vec()))
            }
            None if self.sees_all() => Ok(None),
            None => {
                let visible: Vec<String> = served.iter().filter(|k| self.sees(k)).cloned().collect();
                if visible.is_empty() {
                    return Err(ApiError::forbidden(format!("key '{}' has access to none of the served knowledge bases", self.key_id)));
                }
                Ok(Some(visible))
            }
        }
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[derive(Debug, Clone, Default)]
pub struct Keys {
    entries: Vec<KeyEntry>,
}

impl Keys {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: KeysFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for k in &f.keys {
            if k.sha256.len() != 64 || !k.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{}: key '{}' needs a 64-hex-digit sha256", path.display(), k.id));
            }
        }
        Ok(Self { entries: f.keys })
    }

    pub fn from_entries(entries: Vec<KeyEntry>) -> Self {
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of a bearer token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing API key: send `Authorization: Bearer <key>`"))?;
        let h = hash_key(token);
        self.entries
            .iter()
            .find(|e| e.sha256.eq_ignore_ascii_case(&h))
            .map(|e| Principal { key_id: e.id.clone(), role: e.role, kbs: e.kbs.clone() })
            .ok_or_else(|| ApiError::unauthorized("unknown API key"))
    }
}
