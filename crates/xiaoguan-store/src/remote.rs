//! A Qdrant server or cluster over gRPC (qdrant-client): one collection per knowledge base with
//! the same named vectors as the embedded store (a cosine "dense" vector and a "bm25" sparse
//! vector with the IDF modifier), plus one small state collection where knowledge bases keep
//! their committed state and their ingest leases, so that every replica sees them.
//!
//! The store trait is synchronous (the kb and assist layers run on blocking threads); the client
//! is async. Every call runs on this connection's own small runtime and the caller waits on a
//! channel, which works from any thread, inside another runtime or not.

use crate::types::{CollectionConfig, Condition, ExportedPoint, Filter, Hit, HybridQuery, Result, StoreError, StorePoint};
use crate::VectorStore;
use qdrant_client::qdrant::{
    self, point_id::PointIdOptions, vector_output, Condition as QCondition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, CreateSnapshotRequest, DatetimeRange, DeleteCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, GetPointsBuilder, Modifier, NamedVectors, PayloadIncludeSelector, PointId, PointStruct, PrefetchQueryBuilder, Query,
    QueryPointsBuilder, Range, Rrf, ScrollPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
    UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder, VectorsSelector, VectorsConfigBuilder, WriteOrderingType,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};
use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DENSE: &str = "dense";
const SPARSE: &str = "bm25";
/// The state collection's points carry a one-dimensional placeholder vector.
const PLACEHOLDER: &str = "one";

/// How writes are ordered across a collection's replicas (Qdrant's write ordering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOrdering {
    #[default]
    Weak,
    Medium,
    Strong,
}

/// Where the server is and how its collections are made (`[store]` in the settings).
#[derive(Debug, Clone)]
pub struct QdrantSettings {
    /// gRPC address, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// Collections are named `<prefix><kb>`; the state collection `<prefix>_state`.
    pub collection_prefix: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub write_ordering: WriteOrdering,
    /// Bound on every request.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// REST address for downloading snapshots (default: the gRPC host with port 6333 when the
    /// gRPC port is 6334).
    pub rest_url: Option<String>,
}

impl QdrantSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            collection_prefix: "xiaoguan_".into(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            write_ordering: WriteOrdering::Weak,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            rest_url: None,
        }
    }
}

/// Whether a lease was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Ours until `expires_ms` (ms since the epoch, by this machine's clock).
    Acquired { expires_ms: i64 },
    /// Someone else's until `expires_ms`.
    HeldBy { holder: String, expires_ms: i64 },
}

/// One connection to a Qdrant server, shared by every knowledge base on it.
pub struct QdrantServer {
    client: Qdrant,
    runtime: Option<tokio::runtime::Runtime>,
    settings: QdrantSettings,
}

impl std::fmt::Debug for QdrantServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QdrantServer({})", self.settings.url)
    }
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        // A runtime dropped on an async thread panics; this one may go last from anywhere.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A stable point id for a key of the state collection.
fn key_id(key: &str) -> u64 {
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h >> 1
}

fn num_id(id: Option<&PointId>) -> Option<u64> {
    match id?.point_id_options.as_ref()? {
        PointIdOptions::Num(n) => Some(*n),
        PointIdOptions::Uuid(_) => None,
    }
}

fn json_payload(payload: std::collections::HashMap<String, qdrant::Value>) -> Map<String, Value> {
    Map::from(Payload::from(payload))
}

impl QdrantServer {
    /// Connect and check that the server answers: an unreachable server is an error here, at
    /// start, not at the first question.
    pub fn connect(settings: QdrantSettings) -> Result<Arc<Self>> {
        let unavailable = |m: String| StoreError::Unavailable { at: settings.url.clone(), message: m };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qdrant-client")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("starting the client runtime: {e}")))?;
        let mut builder = Qdrant::from_url(&settings.url).timeout(settings.timeout).connect_timeout(settings.connect_timeout).skip_compatibility_check();
        if let Some(key) = &settings.api_key {
            builder = builder.api_key(key.clone());
        }
        let client = builder.build().map_err(|e| StoreError::InvalidRequest(format!("Qdrant URL {}: {e}", settings.url)))?;
        let server = Arc::new(Self { client, runtime: Some(runtime), settings });
        let c = server.client.clone();
        server.call("checking the server", async move { c.health_check().await })?;
        Ok(server)
    }

    pub fn settings(&self) -> &QdrantSettings {
        &self.settings
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// Run one client call on this connection's runtime and wait for it, bounded by the
    /// request timeout (plus the connect timeout, for a call that has to reconnect first).
    fn call<T: Send + 'static>(&self, what: &str, fut: impl Future<Output = std::result::Result<T, QdrantError>> + Send + 'static) -> Result<T> {
        let bound = self.settings.timeout + self.settings.connect_timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("runtime lives as long as the connection");
        runtime.spawn(async move {
            let r = tokio::time::timeout(bound, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(r)) => r.map_err(|e| self.classify(what, e)),
            Ok(Err(_)) => Err(StoreError::Unavailable { at: self.settings.url.clone(), message: format!("{what}: no answer within {} s", bound.as_secs()) }),
            Err(_) => Err(StoreError::Unavailable { at: self.settings.url.clone(), message: format!("{what}: the client runtime stopped") }),
        }
    }

    /// Whose fault: the server being away (retry later), the request (the caller's), or the server.
    fn classify(&self, what: &str, e: QdrantError) -> StoreError {
        use tonic::Code;
        let at = self.settings.url.clone();
        match &e {
            QdrantError::ResponseError { status } | QdrantError::ResourceExhaustedError { status, .. } => {
                let message = format!("{what}: {}", status.message());
                match status.code() {
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => StoreError::Unavailable { at, message },
                    // The client's channel pool reports a refused connection as `Internal("Failed to connect to …")`.
                    Code::Unknown | Code::Internal
                        if status.message().contains("Failed to connect") || status.message().contains("transport") =>
                    {
                        StoreError::Unavailable { at, message }
                    }
                    Code::InvalidArgument | Code::OutOfRange => StoreError::InvalidRequest(message),
                    Code::Unauthenticated | Code::PermissionDenied => {
                        StoreError::Backend { path: at, message: format!("{message} (check the API key: [store] api_key_env)") }
                    }
                    _ => StoreError::Backend { path: at, message },
                }
            }
            _ => StoreError::Backend { path: at, message: format!("{what}: {e}") },
        }
    }

    fn ordering(&self) -> qdrant::WriteOrdering {
        let t = match self.settings.write_ordering {
            WriteOrdering::Weak => WriteOrderingType::Weak,
            WriteOrdering::Medium => WriteOrderingType::Medium,
            WriteOrdering::Strong => WriteOrderingType::Strong,
        };
        qdrant::WriteOrdering { r#type: t as i32 }
    }

    pub fn collection_name(&self, name: &str) -> String {
        format!("{}{name}", self.settings.collection_prefix)
    }

    fn state_collection(&self) -> String {
        format!("{}_state", self.settings.collection_prefix.trim_end_matches('_'))
    }

    pub fn collection_exists(&self, name: &str) -> Result<bool> {
        let (c, coll) = (self.client.clone(), self.collection_name(name));
        self.call("looking up the collection", async move { c.collection_exists(coll).await })
    }

    /// Open the collection of `name`, creating it (and its payload indexes) when missing.
    pub fn open_collection(self: &Arc<Self>, name: &str, config: &CollectionConfig) -> Result<QdrantStore> {
        let collection = self.collection_name(name);
        let (c, coll) = (self.client.clone(), collection.clone());
        if !self.call("looking up the collection", async move { c.collection_exists(coll).await })? {
            let mut sparse = SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(SPARSE, SparseVectorParamsBuilder::default().modifier(Modifier::Idf));
            let mut dense = VectorsConfigBuilder::default();
            dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(config.dimension as u64, Distance::Cosine));
            let s = &self.settings;
            let create = CreateCollectionBuilder::new(&collection)
                .vectors_config(dense)
                .sparse_vectors_config(sparse)
                .shard_number(s.shard_number)
                .replication_factor(s.replication_factor)
                .write_consistency_factor(s.write_consistency_factor);
            let c = self.client.clone();
            match self.call("creating the collection", async move { c.create_collection(create).await }) {
                Ok(_) => {}
                // Another process made it first.
                Err(StoreError::Backend { message, .. } | StoreError::InvalidRequest(message)) if message.contains("already exists") => {}
                Err(e) => return Err(e),
            }
        }
        let (c, coll) = (self.client.clone(), collection.clone());
        let info = self.call("reading the collection", async move { c.collection_info(coll).await })?;
        let indexed: Vec<String> = info.result.map(|r| r.payload_schema.into_keys().collect()).unwrap_or_default();
        for (fields, kind) in [(&config.keyword_fields, FieldType::Keyword), (&config.integer_fields, FieldType::Integer), (&config.datetime_fields, FieldType::Datetime)] {
            for f in fields.iter().filter(|f| !indexed.contains(f)) {
                let req = CreateFieldIndexCollectionBuilder::new(&collection, f.as_str(), kind).wait(true);
                let c = self.client.clone();
                self.call("creating a payload index", async move { c.create_field_index(req).await })?;
            }
        }
        Ok(QdrantStore { server: self.clone(), collection, dimension: config.dimension, bm25: crate::bm25::model() })
    }

    /// Delete the collection of `name` (nothing when there is none).
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        if !self.collection_exists(name)? {
            return Ok(false);
        }
        let (c, coll) = (self.client.clone(), self.collection_name(name));
        self.call("deleting the collection", async move { c.delete_collection(DeleteCollectionBuilder::new(coll)).await })?;
        Ok(true)
    }

    fn ensure_state_collection(&self) -> Result<String> {
        let coll = self.state_collection();
        let (c, name) = (self.client.clone(), coll.clone());
        if self.call("looking up the state collection", async move { c.collection_exists(name).await })? {
            return Ok(coll);
        }
        let mut dense = VectorsConfigBuilder::default();
        dense.add_named_vector_params(PLACEHOLDER, VectorParamsBuilder::new(1, Distance::Dot));
        let s = &self.settings;
        // One shard: leases rely on the shard applying updates one after another.
        let create = CreateCollectionBuilder::new(&coll).vectors_config(dense).shard_number(1).replication_factor(s.replication_factor).write_consistency_factor(s.write_consistency_factor);
        let c = self.client.clone();
        match self.call("creating the state collection", async move { c.create_collection(create).await }) {
            Ok(_) => Ok(coll),
            Err(StoreError::Backend { message, .. } | StoreError::InvalidRequest(message)) if message.contains("already exists") => Ok(coll),
            Err(e) => Err(e),
        }
    }

    fn state_point(key: &str, fields: Map<String, Value>) -> PointStruct {
        let mut payload = fields;
        payload.insert("key".into(), key.into());
        PointStruct::new(key_id(key), NamedVectors::default().add_vector(PLACEHOLDER, Vector::new_dense(vec![1.0])), Payload::from(payload))
    }

    fn state_fields(&self, key: &str, fields: Option<Vec<&str>>) -> Result<Option<Map<String, Value>>> {
        let coll = self.ensure_state_collection()?;
        let mut req = GetPointsBuilder::new(coll, vec![PointId::from(key_id(key))]).with_vectors(false);
        req = match fields {
            Some(f) => req.with_payload(PayloadIncludeSelector::new(f.into_iter().map(String::from).collect::<Vec<_>>())),
            None => req.with_payload(true),
        };
        let c = self.client.clone();
        let got = self.call("reading state", async move { c.get_points(req).await })?;
        Ok(got.result.into_iter().next().map(|p| json_payload(p.payload)))
    }

    /// A state document: (revision, JSON text), None when never written.
    pub fn read_state(&self, key: &str) -> Result<Option<(u64, String)>> {
        let Some(p) = self.state_fields(key, None)? else { return Ok(None) };
        let revision = p.get("revision").and_then(Value::as_u64).unwrap_or(0);
        let json = p.get("json").and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(Some((revision, json)))
    }

    /// Only the revision of a state document (a cheap check for changes).
    pub fn state_revision(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.state_fields(key, Some(vec!["revision"]))?.map(|p| p.get("revision").and_then(Value::as_u64).unwrap_or(0)))
    }

    /// Replace a state document (applied and acknowledged before this returns).
    pub fn write_state(&self, key: &str, revision: u64, json: &str) -> Result<()> {
        let coll = self.ensure_state_collection()?;
        let mut fields = Map::new();
        fields.insert("revision".into(), revision.into());
        fields.insert("json".into(), json.into());
        let req = UpsertPointsBuilder::new(coll, vec![Self::state_point(key, fields)]).wait(true).ordering(qdrant::WriteOrdering { r#type: WriteOrderingType::Strong as i32 });
        let c = self.client.clone();
        self.call("writing state", async move { c.upsert_points(req).await }).map(|_| ())
    }

    pub fn delete_state(&self, key: &str) -> Result<()> {
        let coll = self.ensure_state_collection()?;
        let req = DeletePointsBuilder::new(coll).points(vec![PointId::from(key_id(key))]).wait(true);
        let c = self.client.clone();
        self.call("deleting state", async move { c.delete_points(req).await }).map(|_| ())
    }

    /// Take (or renew) the lease `name` for `holder` for `ttl`, unless another holder has it and
    /// it has not expired. Qdrant has no compare-and-swap, but an upsert's `update_filter` only
    /// changes a point that matches it (and the state collection's single shard applies updates
    /// in order), so "free, expired or mine" is checked and the lease written in one step.
    pub fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseStatus> {
        let coll = self.ensure_state_collection()?;
        let key = format!("lease/{name}");
        let lease = |holder: &str, expires_ms: i64| {
            let mut f = Map::new();
            f.insert("holder".into(), holder.into());
            f.insert("expires_ms".into(), expires_ms.into());
            Self::state_point(&key, f)
        };
        let strong = || qdrant::WriteOrdering { r#type: WriteOrderingType::Strong as i32 };
        // Make the point when there is none, leaving an existing one alone: a new point is
        // inserted whatever the filter says; an existing one matches no holder named so.
        let never = qdrant::Filter::must([QCondition::matches("holder", "\u{1}no holder".to_string())]);
        let create = UpsertPointsBuilder::new(&coll, vec![lease("", 0)]).wait(true).ordering(strong()).update_filter(never);
        let c = self.client.clone();
        self.call("creating a lease", async move { c.upsert_points(create).await })?;
        let now = now_ms();
        let expires_ms = now + ttl.as_millis() as i64;
        let free = qdrant::Filter::should([
            QCondition::range("expires_ms", Range { lt: Some(now as f64), ..Default::default() }),
            QCondition::matches("holder", holder.to_string()),
        ]);
        let take = UpsertPointsBuilder::new(&coll, vec![lease(holder, expires_ms)]).wait(true).ordering(strong()).update_filter(free);
        let c = self.client.clone();
        self.call("taking a lease", async move { c.upsert_points(take).await })?;
        let got = self.state_fields(&key, Some(vec!["holder", "expires_ms"]))?.unwrap_or_default();
        let who = got.get("holder").and_then(Value::as_str).unwrap_or_default().to_string();
        let until = got.get("expires_ms").and_then(Value::as_i64).unwrap_or(0);
        Ok(if who == holder { LeaseStatus::Acquired { expires_ms: until } } else { LeaseStatus::HeldBy { holder: who, expires_ms: until } })
    }

    /// Give the lease back (only when `holder` still has it).
    pub fn release(&self, name: &str, holder: &str) -> Result<()> {
        let coll = self.ensure_state_collection()?;
        let key = format!("lease/{name}");
        let mut f = Map::new();
        f.insert("holder".into(), "".into());
        f.insert("expires_ms".into(), 0.into());
        let mine = qdrant::Filter::must([QCondition::matches("holder", holder.to_string())]);
        let req = UpsertPointsBuilder::new(coll, vec![Self::state_point(&key, f)]).wait(true).update_filter(mine);
        let c = self.client.clone();
        self.call("releasing a lease", async move { c.upsert_points(req).await }).map(|_| ())
    }

    fn rest_url(&self) -> Result<String> {
        if let Some(r) = &self.settings.rest_url {
            return Ok(r.trim_end_matches('/').to_string());
        }
        let u = self.settings.url.trim_end_matches('/');
        u.strip_suffix(":6334").map(|base| format!("{base}:6333")).ok_or_else(|| {
            StoreError::InvalidRequest(format!("no REST address for snapshot downloads: set [store] rest_url (gRPC is at {u})"))
        })
    }
}

/// A knowledge base's collection on a Qdrant server.
pub struct QdrantStore {
    server: Arc<QdrantServer>,
    collection: String,
    dimension: usize,
    bm25: qdrant_edge::bm25_embed::EdgeBm25,
}

impl QdrantStore {
    pub fn collection(&self) -> &str {
        &self.collection
    }

    fn filter(&self, filter: &Filter) -> Result<Option<qdrant::Filter>> {
        if filter.all.is_empty() {
            return Ok(None);
        }
        let matches = |field: &str, v: &Value| -> Result<QCondition> {
            Ok(match v {
                Value::String(s) => QCondition::matches(field, s.clone()),
                Value::Number(n) if n.is_i64() => QCondition::matches(field, n.as_i64().unwrap_or_default()),
                Value::Bool(b) => QCondition::matches(field, *b),
                other => return Err(StoreError::InvalidRequest(format!("filter values must be strings, integers or booleans, got {other}"))),
            })
        };
        let (mut must, mut must_not) = (Vec::new(), Vec::new());
        for c in &filter.all {
            match c {
                Condition::Eq { field, value } => must.push(matches(field, value)?),
                Condition::Ne { field, value } => must_not.push(matches(field, value)?),
                Condition::In { field, values } => {
                    let any = values.iter().map(|v| matches(field, v)).collect::<Result<Vec<_>>>()?;
                    must.push(QCondition::from(qdrant::Filter::should(any)));
                }
                Condition::Range { field, gte, lte } => must.push(QCondition::range(field, Range { gte: *gte, lte: *lte, ..Default::default() })),
                Condition::DateRange { field, gte, lte } => {
                    let ts = |v: &Option<String>| -> Result<Option<prost_types::Timestamp>> {
                        v.as_deref()
                            .map(|s| {
                                let micros = crate::bm25::parse_date(s)?.timestamp();
                                Ok(prost_types::Timestamp { seconds: micros.div_euclid(1_000_000), nanos: (micros.rem_euclid(1_000_000) * 1000) as i32 })
                            })
                            .transpose()
                    };
                    must.push(QCondition::datetime_range(field, DatetimeRange { gte: ts(gte)?, lte: ts(lte)?, ..Default::default() }));
                }
            }
        }
        Ok(Some(qdrant::Filter { must, must_not, ..Default::default() }))
    }

    fn point(id: u64, dense: Vec<f32>, indices: Vec<u32>, values: Vec<f32>, payload: Map<String, Value>) -> PointStruct {
        let vectors = NamedVectors::default().add_vector(DENSE, Vector::new_dense(dense)).add_vector(SPARSE, Vector::new_sparse(indices, values));
        PointStruct::new(id, vectors, Payload::from(payload))
    }

    fn write(&self, what: &str, points: Vec<PointStruct>) -> Result<()> {
        let req = UpsertPointsBuilder::new(&self.collection, points).wait(true).ordering(self.server.ordering());
        let c = self.server.client.clone();
        self.server.call(what, async move { c.upsert_points(req).await }).map(|_| ())
    }
}

fn dense_of(v: Option<&qdrant::VectorsOutput>) -> Option<Vec<f32>> {
    match v?.get_vector_by_name(DENSE)? {
        vector_output::Vector::Dense(d) => Some(d.data),
        _ => None,
    }
}

impl VectorStore for QdrantStore {
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
            list.push(Self::point(p.id, p.dense, sparse.indices, sparse.values, p.payload));
        }
        self.write("writing points", list)
    }

    fn delete(&self, filter: &Filter) -> Result<()> {
        let Some(f) = self.filter(filter)? else {
            return Err(StoreError::InvalidRequest("refusing to delete with an empty filter".into()));
        };
        let req = DeletePointsBuilder::new(&self.collection).points(f).wait(true).ordering(self.server.ordering());
        let c = self.server.client.clone();
        self.server.call("deleting points", async move { c.delete_points(req).await }).map(|_| ())
    }

    fn search(&self, q: &HybridQuery) -> Result<Vec<Hit>> {
        let filter = self.filter(&q.filter)?;
        let mut legs: Vec<(Query, &str, f32)> = Vec::new();
        if !q.dense.is_empty() {
            if q.dense.len() != self.dimension {
                return Err(StoreError::InvalidRequest(format!("query vector has {} dimensions, the store {}", q.dense.len(), self.dimension)));
            }
            legs.push((Query::new_nearest(VectorInput::new_dense(q.dense.clone())), DENSE, q.dense_weight));
        }
        if !q.text.trim().is_empty() {
            let sparse = self.bm25.embed_query(&q.text);
            if !sparse.indices.is_empty() {
                legs.push((Query::new_nearest(VectorInput::new_sparse(sparse.indices, sparse.values)), SPARSE, q.bm25_weight));
            }
        }
        if legs.is_empty() || q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut req = QueryPointsBuilder::new(&self.collection).limit(q.limit as u64).with_payload(true);
        // The dense vector comes back so each hit can carry its absolute cosine similarity.
        req = if q.dense.is_empty() { req.with_vectors(false) } else { req.with_vectors(VectorsSelector::new(vec![DENSE.to_string()])) };
        if legs.len() == 1 {
            let (query, using, _) = legs.pop().expect("one leg");
            req = req.query(query).using(using);
        } else {
            // Two legs are prefetched and fused by weighted RRF, as the embedded store does.
            let weights: Vec<f32> = legs.iter().map(|l| l.2).collect();
            let prefetch: Vec<qdrant::PrefetchQuery> = legs
                .into_iter()
                .map(|(query, using, _)| {
                    let mut p = PrefetchQueryBuilder::default().query(query).using(using).limit(q.candidates.max(q.limit) as u64);
                    if let Some(f) = &filter {
                        p = p.filter(f.clone());
                    }
                    p.build()
                })
                .collect();
            req = req.prefetch(prefetch).query(Query::new_rrf(Rrf { k: Some(60), weights }));
        }
        if let Some(f) = filter {
            req = req.filter(f);
        }
        let c = self.server.client.clone();
        let res = self.server.call("searching", async move { c.query(req).await })?;
        Ok(res
            .result
            .into_iter()
            .filter_map(|p| {
                let id = num_id(p.id.as_ref())?;
                let similarity = dense_of(p.vectors.as_ref()).map(|v| crate::edge::cosine(&q.dense, &v));
                Some(Hit { id, score: p.score, dense_similarity: similarity, payload: json_payload(p.payload) })
            })
            .collect())
    }

    fn count(&self, filter: &Filter) -> Result<usize> {
        let mut req = CountPointsBuilder::new(&self.collection).exact(true);
        if let Some(f) = self.filter(filter)? {
            req = req.filter(f);
        }
        let c = self.server.client.clone();
        let res = self.server.call("counting points", async move { c.count(req).await })?;
        Ok(res.result.map(|r| r.count as usize).unwrap_or(0))
    }

    fn scroll(&self, filter: &Filter, offset: Option<u64>, limit: usize) -> Result<(Vec<Hit>, Option<u64>)> {
        let mut req = ScrollPointsBuilder::new(&self.collection).limit(limit.max(1) as u32).with_payload(true).with_vectors(false);
        if let Some(f) = self.filter(filter)? {
            req = req.filter(f);
        }
        if let Some(o) = offset {
            req = req.offset(PointId::from(o));
        }
        let c = self.server.client.clone();
        let res = self.server.call("scrolling points", async move { c.scroll(req).await })?;
        let hits = res
            .result
            .into_iter()
            .filter_map(|p| Some(Hit { id: num_id(p.id.as_ref())?, score: 0.0, dense_similarity: None, payload: json_payload(p.payload) }))
            .collect();
        Ok((hits, num_id(res.next_page_offset.as_ref())))
    }

    fn dense_vectors(&self, ids: &[u64]) -> Result<Vec<Option<Vec<f32>>>> {
        let point_ids: Vec<PointId> = ids.iter().map(|&n| PointId::from(n)).collect();
        let req = GetPointsBuilder::new(&self.collection, point_ids).with_payload(false).with_vectors(VectorsSelector::new(vec![DENSE.to_string()]));
        let c = self.server.client.clone();
        let res = self.server.call("reading vectors", async move { c.get_points(req).await })?;
        let found: std::collections::HashMap<u64, Vec<f32>> =
            res.result.into_iter().filter_map(|p| Some((num_id(p.id.as_ref())?, dense_of(p.vectors.as_ref())?))).collect();
        Ok(ids.iter().map(|n| found.get(n).cloned()).collect())
    }

    fn export(&self, offset: Option<u64>, limit: usize) -> Result<(Vec<ExportedPoint>, Option<u64>)> {
        let mut req = ScrollPointsBuilder::new(&self.collection).limit(limit.max(1) as u32).with_payload(true).with_vectors(true);
        if let Some(o) = offset {
            req = req.offset(PointId::from(o));
        }
        let c = self.server.client.clone();
        let res = self.server.call("exporting points", async move { c.scroll(req).await })?;
        let mut out = Vec::with_capacity(res.result.len());
        for p in res.result {
            let Some(id) = num_id(p.id.as_ref()) else { continue };
            let dense = dense_of(p.vectors.as_ref()).unwrap_or_default();
            let (sparse_indices, sparse_values) = match p.vectors.as_ref().and_then(|v| v.get_vector_by_name(SPARSE)) {
                Some(vector_output::Vector::Sparse(s)) => (s.indices, s.values),
                _ => (Vec::new(), Vec::new()),
            };
            out.push(ExportedPoint { id, dense, sparse_indices, sparse_values, payload: json_payload(p.payload) });
        }
        Ok((out, num_id(res.next_page_offset.as_ref())))
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
            if p.sparse_indices.len() != p.sparse_values.len() {
                return Err(StoreError::InvalidRequest(format!("point {}: sparse indices and values differ in length", p.id)));
            }
            list.push(Self::point(p.id, p.dense, p.sparse_indices, p.sparse_values, p.payload));
        }
        self.write("importing points", list)
    }

    fn describe(&self) -> String {
        format!("qdrant {} collection {}", self.server.url(), self.collection)
    }

    /// Every write waits until the server has applied it (and written its WAL).
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// The server builds its indexes by itself, in the background: wait until the collection is
    /// green (its optimizer idle), so that a bulk load is followed by indexed searches as on the
    /// embedded store. A pending optimization (grey) is started by an empty optimizer update, as
    /// the server's documentation says; past the bound the wait ends with a warning (the points
    /// are written and committed, only not indexed yet).
    fn optimize(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let bound = Duration::from_secs(900);
        let mut nudged = false;
        loop {
            let (c, coll) = (self.server.client.clone(), self.collection.clone());
            let info = self.server.call("reading the collection", async move { c.collection_info(coll).await })?;
            let status = info.result.map(|r| r.status).unwrap_or_default();
            match qdrant::CollectionStatus::try_from(status) {
                Ok(qdrant::CollectionStatus::Green) => return Ok(()),
                Ok(qdrant::CollectionStatus::Red) => {
                    return Err(StoreError::Backend { path: self.server.url().into(), message: format!("collection {} is red (an optimization failed)", self.collection) })
                }
                Ok(qdrant::CollectionStatus::Grey) if !nudged => {
                    nudged = true;
                    let req = qdrant::UpdateCollectionBuilder::new(&self.collection).optimizers_config(qdrant::OptimizersConfigDiffBuilder::default());
                    let c = self.server.client.clone();
                    self.server.call("starting the optimizer", async move { c.update_collection(req).await })?;
                }
                _ => {}
            }
            if started.elapsed() > bound {
                tracing::warn!(collection = %self.collection, "the server is still indexing after {bound:?}; searches are exact until it is done");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A server snapshot of the collection, downloaded into `dest` with a `snapshot.json`
    /// saying where it came from (restore it with Qdrant's snapshot recovery).
    fn snapshot(&self, dest: &Path) -> Result<()> {
        let req = CreateSnapshotRequest { collection_name: self.collection.clone() };
        let c = self.server.client.clone();
        let res = self.server.call("creating a snapshot", async move { c.create_snapshot(req).await })?;
        let d = res.snapshot_description.ok_or_else(|| StoreError::Backend { path: self.server.url().into(), message: "the server made no snapshot".into() })?;
        let io = |action: &'static str, e: std::io::Error| StoreError::Io { action, path: dest.display().to_string(), source: e };
        std::fs::create_dir_all(dest).map_err(|e| io("creating", e))?;
        let url = format!("{}/collections/{}/snapshots/{}", self.server.rest_url()?, self.collection, d.name);
        let file = dest.join(&d.name);
        let bytes = http_download(&url, self.server.settings.api_key.as_deref(), &file, self.server.settings.timeout)
            .map_err(|e| StoreError::Unavailable { at: url.clone(), message: format!("downloading the snapshot: {e}") })?;
        let manifest = serde_json::json!({
            "server": self.server.url(), "collection": self.collection, "snapshot": d.name,
            "bytes": bytes, "checksum": d.checksum,
        });
        std::fs::write(dest.join("snapshot.json"), serde_json::to_vec_pretty(&manifest).expect("json")).map_err(|e| io("writing", e))?;
        Ok(())
    }
}

/// A plain-HTTP GET of a (possibly large) file: the snapshot download, the only REST call made.
fn http_download(url: &str, api_key: Option<&str>, to: &Path, timeout: Duration) -> std::io::Result<u64> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let rest = url.strip_prefix("http://").ok_or_else(|| bad(format!("{url}: only http:// REST addresses can be downloaded from; copy the snapshot from the server's snapshots folder")))?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(timeout.max(Duration::from_secs(30))))?;
    let key = api_key.map(|k| format!("api-key: {k}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{key}Connection: close\r\n\r\n")?;
    let mut reader = std::io::BufReader::new(stream);
    let mut head = Vec::new();
    // Headers end at the first empty line.
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if reader.read(&mut b)? == 0 {
            return Err(bad("the server closed the connection before the headers ended".into()));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(bad(format!("HTTP {status} for {url}")));
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err(bad("chunked snapshot downloads are not supported".into()));
    }
    let mut out = std::fs::File::create(to)?;
    let n = std::io::copy(&mut reader, &mut out)?;
    out.sync_all()?;
    Ok(n)
}
