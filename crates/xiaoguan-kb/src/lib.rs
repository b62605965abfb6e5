//! The knowledge-base layer of xiaoguan: definitions (`kb.toml`), document readers, the
//! incremental ingestion pipeline into the vector store, and search with citations.
//! Knows nothing of HTTP.

pub mod backend;
pub mod definition;
pub mod migrate;
pub mod filters;
pub mod ingest;
pub mod kb;
pub mod limits;
pub mod readers;
pub mod state;

pub use backend::{StoreBackend, StoreSettings};
pub use definition::{KbDefinition, SourceSpec};
pub use ingest::{IngestOptions, IngestReport, VectorSource};
pub use kb::{KnowledgeBase, SearchHit, SearchOptions};
pub use limits::ReaderLimits;
pub use state::KbState;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error(transparent)]
    Definition(#[from] definition::DefinitionError),
    #[error("data root {0} does not exist (set --data-root / XIAOGUAN_DATA_ROOT)")]
    NoDataRoot(String),
    #[error("knowledge base '{0}' has not been ingested yet: run `xiaoguan kb ingest {0}`")]
    NotIngested(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// Another process is changing the knowledge base (holds its ingest lease).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] xiaoguan_store::StoreError),
    #[error(transparent)]
    Model(#[from] xiaoguan_models::ModelError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
}

impl KbError {
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        KbError::Io { action, path: path.display().to_string(), source }
    }
    /// The vector store's server cannot be reached: retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KbError::Store(xiaoguan_store::StoreError::Unavailable { .. }))
    }
    /// True when the caller's input was at fault.
    pub fn is_user_error(&self) -> bool {
        match self {
            KbError::Definition(_) | KbError::NoDataRoot(_) | KbError::NotIngested(_) | KbError::InvalidQuery(_) => true,
            KbError::Store(xiaoguan_store::StoreError::InvalidRequest(_)) => true,
            KbError::Model(m) => m.is_user_error(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, KbError>;
