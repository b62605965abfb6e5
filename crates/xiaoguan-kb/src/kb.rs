//! An opened knowledge base: its store, its committed state and search.

use crate::definition::KbDefinition;
use crate::state::KbState;
use crate::{KbError, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use xiaoguan_models::{Embedder, TextKind};
use xiaoguan_store::{CollectionConfig, Condition, Filter, Hit, HybridQuery, VectorStore};
use crate::backend::{StateKeeper, StoreBackend};

pub const KEYWORD_FIELDS: &[&str] = &["doc_id", "doc_hash", "doc_type", "region", "issuer", "doc_no", "kb"];
pub const INTEGER_FIELDS: &[&str] = &["article_no", "ordinal"];
/// The version / issue date ("2018-12-29"): "the text as issued by a given day" is a date range.
pub const DATETIME_FIELDS: &[&str] = &["date"];

pub struct KnowledgeBase {
    pub def: KbDefinition,
    pub dir: PathBuf,
    pub(crate) store: Box<dyn VectorStore>,
    pub(crate) state: RwLock<KbState>,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) backend: StoreBackend,
    pub(crate) keeper: Box<dyn StateKeeper>,
    /// When the committed revision was last checked (shared backends only).
    checked: Mutex<Instant>,
}

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub limit: usize,
    pub filter: Filter,
    pub dense_weight: f32,
    pub bm25_weight: f32,
    /// Look up "…法第N条" questions by title and article number first.
    pub article_lookup: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self { limit: 5, filter: Filter::none(), dense_weight: 1.0, bm25_weight: 1.0, article_lookup: true }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub kb: String,
    pub chunk_id: String,
    pub doc_id: String,
    pub title: String,
    /// "社会保险法 > 第二章 基本养老保险 > 第十六条"
    pub heading_path: String,
    pub article: Option<String>,
    pub doc_no: Option<String>,
    pub text: String,
    pub score: f32,
    /// Cosine similarity of the chunk to the query (absolute; see `Hit::dense_similarity`).
    pub similarity: Option<f32>,
    /// How it was found: "hybrid" or "article".
    pub via: &'static str,
    pub payload: Map<String, Value>,
}

impl SearchHit {
    fn from_hit(kb: &str, via: &'static str, hit: Hit) -> Self {
        let (score, similarity, payload) = (hit.score, hit.dense_similarity, hit.payload);
        let s = |k: &str| payload.get(k).and_then(Value::as_str).map(String::from);
        Self {
            kb: kb.to_string(),
            chunk_id: s("chunk_id").unwrap_or_default(),
            doc_id: s("doc_id").unwrap_or_default(),
            title: s("title").unwrap_or_default(),
            heading_path: s("heading_path").unwrap_or_default(),
            article: s("article"),
            doc_no: s("doc_no"),
            text: s("text").unwrap_or_default(),
            score,
            similarity,
            via,
            payload,
        }
    }
}

pub fn store_config(dimension: usize) -> CollectionConfig {
    CollectionConfig {
        dimension,
        keyword_fields: KEYWORD_FIELDS.iter().map(|s| s.to_string()).collect(),
        integer_fields: INTEGER_FIELDS.iter().map(|s| s.to_string()).collect(),
        datetime_fields: DATETIME_FIELDS.iter().map(|s| s.to_string()).collect(),
    }
}

impl KnowledgeBase {
    /// Open (or create, empty) the knowledge base in the embedded store, `<kbs_root>/<id>`.
    pub fn open(def: &KbDefinition, kbs_root: &Path, embedder: Arc<dyn Embedder>) -> Result<Self> {
        Self::open_in(def, kbs_root, embedder, &StoreBackend::Embedded)
    }

    /// Open (or create, empty) the knowledge base on `backend`. `<kbs_root>/<id>` holds what is
    /// this machine's own (uploads, quarantine; with the embedded store, the index and state too).
    pub fn open_in(def: &KbDefinition, kbs_root: &Path, embedder: Arc<dyn Embedder>, backend: &StoreBackend) -> Result<Self> {
        let dir = kbs_root.join(&def.id);
        std::fs::create_dir_all(&dir).map_err(|e| KbError::io("creating", &dir, e))?;
        let keeper = backend.keeper(&dir, &def.id);
        let state = keeper.load()?.unwrap_or_else(|| KbState { kb: def.id.clone(), embedder: embedder.model_id().to_string(), ..Default::default() });
        let store = backend.open_store(&dir, &def.id, &store_config(embedder.dimension()))?;
        Ok(Self { def: def.clone(), dir, store, state: RwLock::new(state), embedder, backend: backend.clone(), keeper, checked: Mutex::new(Instant::now()) })
    }

    /// The committed state as this process last saw it (see [`refresh`](Self::refresh)).
    pub fn state(&self) -> KbState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Which backend serves this KB ("embedded /path/store", "qdrant http://… collection …").
    pub fn backend_description(&self) -> String {
        self.store.describe()
    }

    pub fn backend(&self) -> &StoreBackend {
        &self.backend
    }

    /// On a shared backend, pick up another process's commit: the committed revision is checked
    /// at most once per poll interval and the state reloaded when it moved. True when it did.
    pub fn refresh(&self) -> Result<bool> {
        let Some(poll) = self.backend.poll_interval() else { return Ok(false) };
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < poll {
                return Ok(false);
            }
            *checked = Instant::now();
        }
        self.reload_if_moved()
    }

    /// Reload the committed state when its revision differs from the one held.
    pub(crate) fn reload_if_moved(&self) -> Result<bool> {
        let held = self.state.read().unwrap_or_else(|p| p.into_inner()).revision;
        match self.keeper.revision()? {
            Some(r) if r != held => {
                if let Some(fresh) = self.keeper.load()? {
                    *self.state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// The stored vectors of a document's chunks, when this KB holds exactly that version of it
    /// (same content hash, which covers text, metadata, chunking and embedder) from the same
    /// embedder: another KB ingesting the same document reuses them instead of embedding again.
    pub fn stored_chunk_vectors(&self, key: &str, hash: &str, chunks: usize, embedder: &str) -> Result<Option<Vec<Vec<f32>>>> {
        let holds = {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            st.embedder == embedder && st.documents.get(key).is_some_and(|d| d.hash == hash && d.chunks == chunks)
        };
        if !holds || chunks == 0 {
            return Ok(None);
        }
        let ids: Vec<u64> = (0..chunks).map(|i| crate::ingest::point_id(&self.def.id, key, hash, i)).collect();
        Ok(self.store.dense_vectors(&ids)?.into_iter().collect())
    }

    /// The committed version (without cloning the document list).
    pub fn version(&self) -> u64 {
        self.state.read().unwrap_or_else(|p| p.into_inner()).version
    }

    pub fn store(&self) -> &dyn VectorStore {
        self.store.as_ref()
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Hybrid search over committed chunks, with the article lookup for "…第N条" questions.
    pub fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let query = xiaoguan_text::fold_for_search(query);
        let dense = self.embed_folded(&query)?;
        self.search_folded(&query, &dense, opts)
    }

    /// The query's embedding by this KB's embedder (what `search` does before `search_embedded`).
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.embed_folded(&xiaoguan_text::fold_for_search(query))
    }

    /// `search` with the query already embedded (by this KB's embedder): one embedding serves
    /// every knowledge base a question is routed to.
    pub fn search_embedded(&self, query: &str, dense: &[f32], opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        self.search_folded(&xiaoguan_text::fold_for_search(query), dense, opts)
    }

    fn embed_folded(&self, query: &str) -> Result<Vec<f32>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(KbError::InvalidQuery("the query is empty".into()));
        }
        Ok(self.embedder.embed(&[query], TextKind::Query)?.pop().unwrap_or_default())
    }

    /// The search proper, on a query folded as the index is (full-width digits, traditional
    /// characters: 社會保險法第１６條 → 社会保险法第16条).
    fn search_folded(&self, query: &str, dense: &[f32], opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(KbError::InvalidQuery("the query is empty".into()));
        }
        if opts.limit == 0 || opts.limit > 200 {
            return Err(KbError::InvalidQuery(format!("limit must be 1..=200, got {}", opts.limit)));
        }
        let weight_ok = |w: f32| w.is_finite() && (0.0..=100.0).contains(&w);
        if !weight_ok(opts.dense_weight) || !weight_ok(opts.bm25_weight) || opts.dense_weight + opts.bm25_weight == 0.0 {
            return Err(KbError::InvalidQuery(format!(
                "fusion weights must be 0..=100 and not both 0, got dense {} and BM25 {}",
                opts.dense_weight, opts.bm25_weight
            )));
        }
        self.refresh()?;
        // Read-locked, not cloned: the committed state can hold thousands of documents.
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if state.documents.is_empty() {
            return Err(KbError::NotIngested(self.def.id.clone()));
        }
        let mut out: Vec<SearchHit> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        if opts.article_lookup {
            for hit in self.article_lookup(query, dense, &state, opts)? {
                if seen.insert(hit.chunk_id.clone()) {
                    out.push(hit);
                }
            }
        }
        // Points of an ingest that has not committed are hidden by the post-filter below; they
        // are bounded by one or two batches, so fetching more until enough remain always ends.
        let mut fetch = opts.limit * 2 + 5;
        loop {
            let hq = HybridQuery {
                dense: dense.to_vec(),
                text: query.to_string(),
                limit: fetch,
                candidates: fetch.max(50),
                filter: opts.filter.clone(),
                dense_weight: opts.dense_weight,
                bm25_weight: opts.bm25_weight,
            };
            let raw = self.store.search(&hq)?;
            let exhausted = raw.len() < fetch;
            for h in raw {
                if out.len() >= opts.limit {
                    break;
                }
                let hit = SearchHit::from_hit(&self.def.id, "hybrid", h);
                if committed(&state, &hit) && seen.insert(hit.chunk_id.clone()) {
                    out.push(hit);
                }
            }
            if out.len() >= opts.limit || exhausted || fetch >= 2000 {
                break;
            }
            fetch *= 4;
        }
        out.truncate(opts.limit);
        Ok(out)
    }

    /// "农民专业合作社法第六条…": documents whose title the query names, then their article N.
    fn article_lookup(&self, query: &str, dense: &[f32], state: &KbState, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let Some((fragment, number)) = article_reference(query) else { return Ok(Vec::new()) };
        let mut scored: Vec<(f32, &String, &str)> = state
            .documents
            .iter()
            .filter_map(|(key, d)| {
                let s = title_containment(&d.title, &fragment);
                (s >= 0.6).then_some((s, key, d.title.as_str()))
            })
            .collect();
        // Best match first; among equals, the longer (more specific) title, then the newest version (key sorts by date).
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0).then(b.2.chars().count().cmp(&a.2.chars().count())).then(b.1.cmp(a.1))
        });
        // All documents tied with the best title (a code split into parts shares one title),
        // and at least the best three.
        let best = scored.first().map(|s| s.0).unwrap_or(0.0);
        let keys: Vec<Value> = scored
            .iter()
            .enumerate()
            .take_while(|(i, s)| *i < 3 || s.0 >= best - 1e-6)
            .take(12)
            .map(|(_, (_, k, _))| Value::String((*k).clone()))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let filter = opts
            .filter
            .clone()
            .and(Condition::In { field: "doc_id".into(), values: keys.clone() })
            .and(Condition::Eq { field: "article_no".into(), value: Value::from(number) });
        let hq = HybridQuery { dense: dense.to_vec(), text: query.to_string(), limit: 40, candidates: 40, filter, dense_weight: 1.0, bm25_weight: 1.0 };
        let mut hits: Vec<SearchHit> = self
            .store
            .search(&hq)?
            .into_iter()
            .map(|h| SearchHit::from_hit(&self.def.id, "article", h))
            .filter(|h| committed(state, h))
            .collect();
        // Order by the title ranking, keeping each article's parts in order.
        let rank = |doc: &str| keys.iter().position(|k| k.as_str() == Some(doc)).unwrap_or(usize::MAX);
        hits.sort_by_key(|h| (rank(&h.doc_id), h.payload.get("ordinal").and_then(Value::as_u64).unwrap_or(0)));
        Ok(hits)
    }
}

fn committed(state: &KbState, hit: &SearchHit) -> bool {
    let hash = hit.payload.get("doc_hash").and_then(Value::as_str);
    state.documents.get(&hit.doc_id).is_some_and(|d| Some(d.hash.as_str()) == hash)
}

/// ("…农民专业合作社法", 6) from "民法商法农民专业合作社法第六条的内容是什么？".
pub fn article_reference(query: &str) -> Option<(String, u32)> {
    for (idx, _) in query.match_indices('第') {
        let rest = &query[idx + '第'.len_utf8()..];
        let Some(end) = rest.find('条') else { continue };
        let Some(n) = xiaoguan_text::numerals::parse(&rest[..end]) else { continue };
        let fragment = query[..idx].replace(['《', '》'], "");
        let fragment = fragment.trim_end_matches(['的', ' ']).to_string();
        if fragment.chars().count() >= 2 {
            return Some((fragment, n));
        }
    }
    None
}

fn bigrams(s: &str) -> Vec<(char, char)> {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Share of the title's character bigrams found in the fragment ("中华人民共和国" ignored).
pub fn title_containment(title: &str, fragment: &str) -> f32 {
    let t = title.trim_start_matches("中华人民共和国");
    let tb = bigrams(t);
    if tb.is_empty() {
        return 0.0;
    }
    let fb: HashSet<(char, char)> = bigrams(fragment).into_iter().collect();
    tb.iter().filter(|b| fb.contains(b)).count() as f32 / tb.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_article_references() {
        assert_eq!(article_reference("民法商法农民专业合作社法第六条的内容是什么？"), Some(("民法商法农民专业合作社法".into(), 6)));
        assert_eq!(article_reference("《社会保险法》第十六条是怎么规定的"), Some(("社会保险法".into(), 16)));
        assert_eq!(article_reference("社保卡丢了怎么办"), None);
        assert_eq!(article_reference("第三条"), None);
    }

    #[test]
    fn title_containment_ignores_the_state_prefix() {
        assert_eq!(title_containment("中华人民共和国农民专业合作社法", "民法商法农民专业合作社法"), 1.0);
        assert!(title_containment("中华人民共和国社会保险法", "民法商法农民专业合作社法") < 0.3);
    }
}
