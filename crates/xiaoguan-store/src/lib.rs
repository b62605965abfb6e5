//! The store layer of xiaoguan: a `VectorStore` trait for hybrid (dense + BM25) search, free of
//! any backend's types, with two implementations: the embedded one on qdrant-edge (in-process
//! Qdrant, the default) and a Qdrant server or cluster over gRPC (qdrant-client). Both compute
//! BM25 term weights with the same tokenizer and let the collection apply IDF, so a knowledge
//! base ranks the same on either. Knows nothing of models or HTTP.

mod bm25;
mod edge;
pub mod process;
mod remote;
mod types;

pub use edge::{EdgeStore, EdgeStoreConfig};
pub use remote::{LeaseStatus, QdrantServer, QdrantSettings, QdrantStore, WriteOrdering};
pub use types::*;

/// What every backend (the embedded shard, a Qdrant server) provides.
pub trait VectorStore: Send + Sync {
    /// Insert or replace points (same id = replace).
    fn upsert(&self, points: Vec<StorePoint>) -> Result<()>;
    /// Delete every point matching the filter.
    fn delete(&self, filter: &Filter) -> Result<()>;
    /// Dense and BM25 candidates fused by weighted RRF; hits carry their payload.
    fn search(&self, query: &HybridQuery) -> Result<Vec<Hit>>;
    /// Exact number of points matching the filter (all points with an empty filter).
    fn count(&self, filter: &Filter) -> Result<usize>;
    /// Points matching the filter, a page at a time: (points, next offset).
    fn scroll(&self, filter: &Filter, offset: Option<u64>, limit: usize) -> Result<(Vec<Hit>, Option<u64>)>;
    /// The dense vectors of these points, in the same order (None for an id not stored).
    fn dense_vectors(&self, ids: &[u64]) -> Result<Vec<Option<Vec<f32>>>>;
    /// Every point with both its vectors, a page at a time (for copying a store elsewhere).
    fn export(&self, offset: Option<u64>, limit: usize) -> Result<(Vec<ExportedPoint>, Option<u64>)>;
    /// Insert exported points as they are (nothing embedded or tokenized again).
    fn import(&self, points: Vec<ExportedPoint>) -> Result<()>;
    /// Which backend and where ("embedded /path", "qdrant http://host:6334 collection xg_laws").
    fn describe(&self) -> String;
    /// Make everything written so far durable.
    fn flush(&self) -> Result<()>;
    /// Build indexes after a bulk load.
    fn optimize(&self) -> Result<()>;
    /// A consistent copy of the store in `dest` (a new folder).
    fn snapshot(&self, dest: &std::path::Path) -> Result<()>;
}
