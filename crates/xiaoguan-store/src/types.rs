use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller's request cannot be served (bad filter value, wrong vector size, …).
    #[error("invalid store request: {0}")]
    InvalidRequest(String),
    /// The store's folder is in use by another process.
    #[error("knowledge-base store {path} is in use by another process (one process per store)")]
    Locked { path: String },
    #[error("store failure at {path}: {message}")]
    Backend { path: String, message: String },
    /// The store's server cannot be reached (down, network, timeout): retry later.
    #[error("vector store {at} is unavailable: {message}")]
    Unavailable { at: String, message: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One chunk as stored: its dense vector, the text BM25 indexes, and its payload (a JSON object).
#[derive(Debug, Clone)]
pub struct StorePoint {
    pub id: u64,
    pub dense: Vec<f32>,
    pub bm25_text: String,
    pub payload: Map<String, Value>,
}

/// A point as exported for a copy to another store: both vectors as stored (the BM25 one as
/// sparse term weights), so nothing is embedded or tokenized again.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedPoint {
    pub id: u64,
    pub dense: Vec<f32>,
    pub sparse_indices: Vec<u32>,
    pub sparse_values: Vec<f32>,
    pub payload: Map<String, Value>,
}

/// What a store is made with: the dense size and the payload fields that get an index.
#[derive(Debug, Clone)]
pub struct CollectionConfig {
    pub dimension: usize,
    /// Payload fields filtered by exact value (get keyword indexes).
    pub keyword_fields: Vec<String>,
    /// Payload fields filtered by number (get integer indexes).
    pub integer_fields: Vec<String>,
    /// Payload fields holding dates (get datetime indexes, for date ranges).
    pub datetime_fields: Vec<String>,
}

/// A payload condition; all conditions of a `Filter` must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Condition {
    /// field == value (string or integer)
    Eq { field: String, value: Value },
    /// field is one of the values
    In { field: String, values: Vec<Value> },
    /// field != value
    Ne { field: String, value: Value },
    /// gte <= field <= lte (numbers)
    Range { field: String, gte: Option<f64>, lte: Option<f64> },
    /// gte <= field <= lte for dates ("2018-12-29" or RFC 3339), e.g. the versions of a statute
    /// already issued on a given day.
    DateRange { field: String, gte: Option<String>, lte: Option<String> },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub all: Vec<Condition>,
}

impl Filter {
    pub fn none() -> Self {
        Self::default()
    }
    pub fn eq(field: &str, value: impl Into<Value>) -> Self {
        Self { all: vec![Condition::Eq { field: field.into(), value: value.into() }] }
    }
    pub fn and(mut self, c: Condition) -> Self {
        self.all.push(c);
        self
    }
}

#[derive(Debug, Clone)]
pub struct HybridQuery {
    /// Query embedding; empty = BM25 only.
    pub dense: Vec<f32>,
    /// Query text for BM25; empty = dense only.
    pub text: String,
    pub limit: usize,
    /// Candidates taken from each leg before fusion.
    pub candidates: usize,
    pub filter: Filter,
    /// RRF weights of the dense and BM25 legs.
    pub dense_weight: f32,
    pub bm25_weight: f32,
}

impl HybridQuery {
    pub fn new(dense: Vec<f32>, text: impl Into<String>, limit: usize) -> Self {
        Self { dense, text: text.into(), limit, candidates: 50, filter: Filter::none(), dense_weight: 1.0, bm25_weight: 1.0 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub id: u64,
    /// The fused (rank-based) score: comparable within one result list only.
    pub score: f32,
    /// Cosine similarity of the point's dense vector to the query vector: an absolute measure
    /// of relevance that can be compared across queries and collections (for evidence gates).
    pub dense_similarity: Option<f32>,
    pub payload: Map<String, Value>,
}
