//! The embedded backend: one qdrant-edge shard per knowledge base, with a dense (cosine) vector
//! and a BM25 sparse vector per chunk. BM25 uses the Multilingual tokenizer (charabia, jieba
//! segmentation for Chinese); its vectors match a Qdrant server's own BM25, so a knowledge base
//! can move to a server without re-embedding.

use crate::types::{Condition, ExportedPoint, Filter, Hit, HybridQuery, Result, StoreError, StorePoint};
use crate::VectorStore;
use qdrant_edge::bm25_embed::EdgeBm25;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::serde_json::Value;
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfig, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder,
    EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations, Fusion, Match, Modifier, NamedQuery,
    PayloadFieldSchema, PayloadSchemaType, PointId, SparseVector, PointInsertOperations, PointOperations, PointStruct, Prefetch,
    QueryEnum, QueryRequest, Range, ScoringQuery, ScrollRequest, UpdateOperation, ValueVariants,
    Vector, VectorInternal, Vectors, WithPayloadInterface, WithVector,
};
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const DENSE: &str = "dense";
const SPARSE: &str = "bm25";

/// The embedded store is made like any other.
pub type EdgeStoreConfig = crate::types::CollectionConfig;

pub struct EdgeStore {
    path: PathBuf,
    // Dropped by hand (see `Drop`): qdrant-edge's own drop flushes and panics when that fails.
    shard: ManuallyDrop<EdgeShard>,
    // qdrant-edge's flush `try_lock`s the WAL and panics when an update holds it: every write
    // (upsert, delete, index, flush, optimize) goes through this one gate.
    writes: Mutex<()>,
    bm25: EdgeBm25,
    dimension: usize,
}

fn backend(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { path: path.display().to_string(), message: e.to_string() }
}

impl EdgeStore {
    /// Open the store at `path`, creating it (and its payload indexes) if it does not exist.
    pub fn open(path: &Path, config: &EdgeStoreConfig) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Io { action: "creating", path: path.display().to_string(), source: e })?;
        let fresh = !path.join("edge_config.json").exists();
        let edge_config: EdgeConfig = EdgeConfigBuilder::new()
            .vector(DENSE, EdgeVectorParamsBuilder::new(config.dimension, Distance::Cosine).build())
            .sparse_vector(SPARSE, EdgeSparseVectorParamsBuilder::new().modifier(Modifier::Idf).build())
            .build();
        let shard = if fresh { EdgeShard::new(path, edge_config) } else { EdgeShard::load(path, None) }.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("WouldBlock") {
                StoreError::Locked { path: path.display().to_string() }
            } else {
                backend(path, msg)
            }
        })?;
        let store = Self { path: path.to_path_buf(), shard: ManuallyDrop::new(shard), writes: Mutex::new(()), bm25: crate::bm25::model(), dimension: config.dimension };
        // Indexes are created on a new store, and on an existing one that predates a field's index.
        let existing = store.indexed_fields();
        for (fields, schema) in [
            (&config.keyword_fields, PayloadSchemaType::Keyword),
            (&config.integer_fields, PayloadSchemaType::Integer),
            (&config.datetime_fields, PayloadSchemaType::Datetime),
        ] {
            for f in fields.iter().filter(|f| !existing.contains(f)) {
                let field_name = f.as_str().try_into().map_err(|_| StoreError::InvalidRequest(format!("bad field name {f}")))?;
                let _gate = store.write_gate();
                store
                    .shard
                    .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name,
                        field_schema: Some(PayloadFieldSchema::FieldType(schema)),
                    })))
                    .map_err(|e| backend(path, e))?;
            }
        }
        Ok(store)
    }

    /// Delete the store at `path` for good. Refused while any process (this one included) has
    /// it open: qdrant-edge holds an exclusive lock on the WAL folder of an open shard, and the
    /// lock taken here is held until the folder is gone.
    pub fn remove(path: &Path) -> Result<()> {
        let wal = path.join("wal");
        match std::fs::File::open(&wal) {
            Ok(dir) => match dir.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { path: path.display().to_string() }),
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err("locking", &wal, e)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("opening", &wal, e)),
        }
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("removing", path, e)),
            _ => Ok(()),
        }
    }

    /// The payload fields that have an index.
    pub fn indexed_fields(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shard.info().payload_schema.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_gate(&self) -> std::sync::MutexGuard<'_, ()> {
        // The gate guards no data: a panic while it was held leaves nothing to repair.
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// qdrant-edge's flush panics (on `expect`) when the disk write fails; that becomes an error.
    fn flush_shard(&self) -> Result<()> {
        let _gate = self.write_gate();
        self.flush_gated()
    }

    /// `flush_shard` for a caller that already holds the write gate.
    fn flush_gated(&self) -> Result<()> {
        catch_unwind(AssertUnwindSafe(|| self.shard.flush())).map_err(|panic| {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            backend(&self.path, format!("flush failed: {}", why.unwrap_or_else(|| "unknown reason".into())))
        })
    }

    fn convert_filter(&self, filter: &Filter) -> Result<Option<qdrant_edge::Filter>> {
        if filter.all.is_empty() {
            return Ok(None);
        }
        let key = |f: &str| f.try_into().map_err(|_| StoreError::InvalidRequest(format!("bad field name {f}")));
        let value = |v: &Value| match v {
            Value::String(s) => Ok(ValueVariants::String(s.clone())),
            Value::Number(n) if n.is_i64() => Ok(ValueVariants::Integer(n.as_i64().unwrap_or_default())),
            Value::Bool(b) => Ok(ValueVariants::Bool(*b)),
            other => Err(StoreError::InvalidRequest(format!("filter values must be strings, integers or booleans, got {other}"))),
        };
        let mut must = Vec::new();
        let mut must_not = Vec::new();
        for c in &filter.all {
            match c {
                Condition::Eq { field, value: v } => must.push(qdrant_edge::Condition::Field(FieldCondition::new_match(key(field)?, Match::new_value(value(v)?)))),
                Condition::Ne { field, value: v } => must_not.push(qdrant_edge::Condition::Field(FieldCondition::new_match(key(field)?, Match::new_value(value(v)?)))),
                Condition::In { field, values } => {
                    let should = values
                        .iter()
                        .map(|v| Ok(qdrant_edge::Condition::Field(FieldCondition::new_match(key(field)?, Match::new_value(value(v)?)))))
                        .collect::<Result<Vec<_>>>()?;
                    must.push(qdrant_edge::Condition::Filter(qdrant_edge::Filter { should: Some(should), min_should: None, must: None, must_not: None }));
                }
                Condition::Range { field, gte, lte } => must.push(qdrant_edge::Condition::Field(FieldCondition::new_range(
                    key(field)?,
                    Range { gte: gte.map(OrderedFloat), lte: lte.map(OrderedFloat), gt: None, lt: None },
                ))),
                Condition::DateRange { field, gte, lte } => {
                    let date = |v: &Option<String>| {
                        v.as_deref()
                            .map(crate::bm25::parse_date)
                            .transpose()
                    };
                    let range = Range { gte: date(gte)?, lte: date(lte)?, gt: None, lt: None };
                    must.push(qdrant_edge::Condition::Field(FieldCondition::new_datetime_range(key(field)?, range)));
                }
            }
        }
        Ok(Some(qdrant_edge::Filter {
            should: None,
            min_should: None,
            must: (!must.is_empty()).then_some(must),
            must_not: (!must_not.is_empty()).then_some(must_not),
        }))
    }

    fn to_hit(id: PointId, score: f32, payload: Option<qdrant_edge::Payload>) -> Hit {
        let id = match id {
            PointId::NumId(n) => n,
            PointId::Uuid(_) => 0,
        };
        Hit { id, score, dense_similarity: None, payload: payload.map(|p| p.0.into_iter().collect()).unwrap_or_default() }
    }
}

impl VectorStore for EdgeStore {
    fn upsert(&self, points: Vec<StorePoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut list = Vec::with_capacity(points.len());
        for p in points {
            if p.dense.len() != self.dimension {
                return Err(StoreError::InvalidRequest(format!("vector has {} dimensions, the store {}", p.dense.len(), self.dimension)));
            }
            let sparse = self.bm25.embed_document(&p.bm25_text);
            let vectors = Vectors::new_named([(DENSE, Vector::new_dense(p.dense)), (SPARSE, Vector::from(sparse))]);
            list.push(PointStruct::new(p.id, vectors, Value::Object(p.payload.into_iter().collect())).into());
        }
        let _gate = self.write_gate();
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(list))))
            .map_err(|e| backend(&self.path, e))
    }

    fn delete(&self, filter: &Filter) -> Result<()> {
        let Some(f) = self.convert_filter(filter)? else {
            return Err(StoreError::InvalidRequest("refusing to delete with an empty filter".into()));
        };
        let _gate = self.write_gate();
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(f)))
            .map_err(|e| backend(&self.path, e))
    }

    fn search(&self, q: &HybridQuery) -> Result<Vec<Hit>> {
        let filter = self.convert_filter(&q.filter)?;
        let mut legs: Vec<(ScoringQuery, f32)> = Vec::new();
        if !q.dense.is_empty() {
            if q.dense.len() != self.dimension {
                return Err(StoreError::InvalidRequest(format!("query vector has {} dimensions, the store {}", q.dense.len(), self.dimension)));
            }
            let nq = NamedQuery { query: VectorInternal::from(q.dense.clone()), using: Some(DENSE.into()) };
            legs.push((ScoringQuery::Vector(QueryEnum::Nearest(nq)), q.dense_weight));
        }
        if !q.text.trim().is_empty() {
            let sparse = self.bm25.embed_query(&q.text);
            if !sparse.indices.is_empty() {
                let nq = NamedQuery { query: VectorInternal::from(sparse), using: Some(SPARSE.into()) };
                legs.push((ScoringQuery::Vector(QueryEnum::Nearest(nq)), q.bm25_weight));
            }
        }
        if legs.is_empty() || q.limit == 0 {
            return Ok(Vec::new());
        }
        // One leg is queried directly; two are prefetched and fused by weighted RRF.
        let (prefetches, query) = if legs.len() == 1 {
            (vec![], legs.pop().expect("one leg").0)
        } else {
            let weights: Vec<OrderedFloat<f32>> = legs.iter().map(|(_, w)| OrderedFloat(*w)).collect();
            let prefetches = legs
                .into_iter()
                .map(|(query, _)| Prefetch {
                    prefetches: vec![],
                    query: Some(query),
                    limit: q.candidates.max(q.limit),
                    params: None,
                    filter: filter.clone(),
                    score_threshold: None,
                })
                .collect();
            (prefetches, ScoringQuery::Fusion(Fusion::Rrf { k: 60, weights: Some(weights) }))
        };
        let request = QueryRequest {
            prefetches,
            query: Some(query),
            filter,
            score_threshold: None,
            limit: q.limit,
            offset: 0,
            params: None,
            // The dense vector comes back so each hit can carry its absolute cosine similarity.
            with_vector: if q.dense.is_empty() { WithVector::Bool(false) } else { WithVector::Selector(vec![DENSE.into()]) },
            with_payload: WithPayloadInterface::Bool(true),
        };
        let hits = self.shard.query(request).map_err(|e| backend(&self.path, e))?;
        Ok(hits
            .into_iter()
            .map(|h| {
                let similarity = h
                    .vector
                    .as_ref()
                    .and_then(|v| v.get(DENSE))
                    .and_then(|r| <&[f32]>::try_from(r).ok())
                    .map(|v| cosine(&q.dense, v));
                let mut hit = Self::to_hit(h.id, h.score, h.payload);
                hit.dense_similarity = similarity;
                hit
            })
            .collect())
    }

    fn count(&self, filter: &Filter) -> Result<usize> {
        let filter = self.convert_filter(filter)?;
        self.shard.count(CountRequest { filter, exact: true }).map_err(|e| backend(&self.path, e))
    }

    fn scroll(&self, filter: &Filter, offset: Option<u64>, limit: usize) -> Result<(Vec<Hit>, Option<u64>)> {
        let filter = self.convert_filter(filter)?;
        let request = ScrollRequest {
            offset: offset.map(PointId::NumId),
            limit: Some(limit.max(1)),
            filter,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(false),
            order_by: None,
        };
        let (records, next) = self.shard.scroll(request).map_err(|e| backend(&self.path, e))?;
        let hits = records.into_iter().map(|r| Self::to_hit(r.id, 0.0, r.payload)).collect();
        let next = next.and_then(|id| match id {
            PointId::NumId(n) => Some(n),
            PointId::Uuid(_) => None,
        });
        Ok((hits, next))
    }

    fn dense_vectors(&self, ids: &[u64]) -> Result<Vec<Option<Vec<f32>>>> {
        let point_ids: Vec<PointId> = ids.iter().map(|&n| PointId::NumId(n)).collect();
        let records = self
            .shard
            .retrieve(&point_ids, Some(WithPayloadInterface::Bool(false)), Some(WithVector::Selector(vec![DENSE.into()])))
            .map_err(|e| backend(&self.path, e))?;
        let mut found: std::collections::HashMap<u64, Vec<f32>> = std::collections::HashMap::new();
        for r in records {
            if let (PointId::NumId(n), Some(v)) = (r.id, r.get_vector_by_name(DENSE)) {
                if let Ok(v) = <&[f32]>::try_from(v) {
                    found.insert(n, v.to_vec());
                }
            }
        }
        Ok(ids.iter().map(|n| found.get(n).cloned()).collect())
    }

    fn export(&self, offset: Option<u64>, limit: usize) -> Result<(Vec<ExportedPoint>, Option<u64>)> {
        let request = ScrollRequest {
            offset: offset.map(PointId::NumId),
            limit: Some(limit.max(1)),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let (records, next) = self.shard.scroll(request).map_err(|e| backend(&self.path, e))?;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let PointId::NumId(id) = r.id else { continue };
            let dense = r.get_vector_by_name(DENSE).and_then(|v| <&[f32]>::try_from(v).ok()).map(<[f32]>::to_vec).unwrap_or_default();
            let (sparse_indices, sparse_values) = r
                .get_vector_by_name(SPARSE)
                .and_then(|v| <&SparseVector>::try_from(v).ok())
                .map(|s| (s.indices.clone(), s.values.clone()))
                .unwrap_or_default();
            let payload = r.payload.map(|p| p.0.into_iter().collect()).unwrap_or_default();
            out.push(ExportedPoint { id, dense, sparse_indices, sparse_values, payload });
        }
        let next = next.and_then(|id| match id {
            PointId::NumId(n) => Some(n),
            PointId::Uuid(_) => None,
        });
        Ok((out, next))
    }

    fn import(&self, points: Vec<ExportedPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut list = Vec::with_capacity(points.len());
        for p in points {
            if p.dense.len() != self.dimension {
                return Err(StoreError::InvalidRequest(format!("point {} has {} dimensions, the store {}", p.id, p.dense.len(), self.dimension)));
            }
            let sparse = SparseVector::new(p.sparse_indices, p.sparse_values)
                .map_err(|e| StoreError::InvalidRequest(format!("point {}: bad sparse vector: {e}", p.id)))?;
            let vectors = Vectors::new_named([(DENSE, Vector::new_dense(p.dense)), (SPARSE, Vector::from(sparse))]);
            list.push(PointStruct::new(p.id, vectors, Value::Object(p.payload.into_iter().collect())).into());
        }
        let _gate = self.write_gate();
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(list))))
            .map_err(|e| backend(&self.path, e))
    }

    fn describe(&self) -> String {
        format!("embedded {}", self.path.display())
    }

    fn flush(&self) -> Result<()> {
        self.flush_shard()
    }

    fn optimize(&self) -> Result<()> {
        let _gate = self.write_gate();
        self.shard.optimize().map(|_| ()).map_err(|e| backend(&self.path, e))
    }

    fn snapshot(&self, dest: &Path) -> Result<()> {
        // No write may land between the flush and the end of the copy, or the copy would be torn.
        let _gate = self.write_gate();
        self.flush_gated()?;
        copy_dir(&self.path, dest)
    }
}

impl Drop for EdgeStore {
    fn drop(&mut self) {
        // The WAL already holds every update (a store reopened without a flush replays it), so
        // a flush that cannot happen is skipped rather than allowed to panic: a panic here
        // while unwinding aborts the process. Cases: the folder was removed underneath the
        // store (`kb remove` from another process, a test's temporary folder), the thread is
        // already panicking, or the disk write fails. The shard is then leaked, not dropped,
        // because its own drop flushes again.
        let flushed = self.path.join("edge_config.json").exists() && !std::thread::panicking() && self.flush_shard().is_ok();
        if flushed {
            // SAFETY: the shard is not used again; `drop` runs once.
            unsafe { ManuallyDrop::drop(&mut self.shard) };
        } else {
            tracing::warn!(path = %self.path.display(), "store closed without a final flush (its WAL keeps the updates)");
        }
    }
}

fn io_err(action: &'static str, p: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { action, path: p.display().to_string(), source }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| io_err("creating", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io_err("listing", from, e))? {
        let entry = entry.map_err(|e| io_err("listing", from, e))?;
        let target = to.join(entry.file_name());
        let is_dir = entry.file_type().map_err(|e| io_err("reading", &entry.path(), e))?.is_dir();
        if is_dir {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| io_err("copying", &entry.path(), e))?;
        }
    }
    Ok(())
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
