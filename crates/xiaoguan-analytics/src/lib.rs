//! Ticket analytics (智能数据分析) for the 12345 hotline: hot issues, repeats and duplicates,
//! trends and dispatch quality, 每周一题 candidates, and Markdown/HTML reports.
//!
//! Compute only: no database, no HTTP, no model types. It takes [`Ticket`]s as plain data,
//! with an optional embedding each; when every ticket has one the matter similarity is their
//! cosine, otherwise a TF-IDF over character bigrams (no model needed).
//!
//! ```no_run
//! use xiaoguan_analytics::{load, Analysis, Config};
//! let tickets = load::load_jsonl("hot_messages.jsonl".as_ref(), &load::FieldMap::default()).unwrap();
//! let a = Analysis::run(&tickets, &Config::default(), "hot_messages.jsonl");
//! println!("{}", xiaoguan_analytics::report::markdown(&a));
//! ```

pub mod hot;
pub mod load;
pub mod place;
pub mod repeats;
pub mod report;
pub mod similarity;
pub mod synth;
pub mod text;
pub mod time;
pub mod trends;

use place::Place;
use serde::{Deserialize, Serialize};
use similarity::{Centroid, SimilarityKind, SparseVec, TfIdf, TfIdfConfig};
use std::collections::HashMap;

pub use hot::{HotIssue, HotReport, WeeklyCandidate};
pub use repeats::{find_same_matter, RepeatChain, RepeatKind, RepeatReport, SameMatter};
pub use trends::Trends;

/// One ticket as plain data. The store side fills it from its records (`TicketRecord`):
/// `id`, `received_at_ms`, title, text, reporter hash, place/town, domain, category, the
/// effective and the suggested unit, `unit_changed()`, `closed()`, and the embedding.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ticket {
    pub id: String,
    /// When it came in (unix ms; civil time read as UTC).
    pub time_ms: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
    /// Who reported it (an account id or a salted hash): repeats by the same person.
    #[serde(default)]
    pub reporter: Option<String>,
    /// A place already known for it (e.g. "南城街道·鸿福路"); read before the title and text.
    #[serde(default)]
    pub place: Option<String>,
    /// The town or street already known for it.
    #[serde(default)]
    pub town: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// The unit it went to (the final one where known).
    #[serde(default)]
    pub unit: Option<String>,
    /// The unit assist suggested.
    #[serde(default)]
    pub suggested_unit: Option<String>,
    /// The agent dispatched it somewhere other than suggested.
    #[serde(default)]
    pub unit_changed: bool,
    /// Closed (办结 / answered).
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub closed_at_ms: Option<i64>,
    #[serde(default)]
    pub likes: Option<u32>,
    #[serde(default)]
    pub dislikes: Option<u32>,
    /// Its embedding (any model; only compared with embeddings of the same length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// Similarity thresholds for one kind of similarity.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// A candidate pair is linked into a hot-issue group at this similarity (plus the bonus).
    pub group_edge: f32,
    /// Two groups are merged only when their centroids are at least this similar (keeps a
    /// chain of pairwise links from gluing different matters together).
    pub group_merge: f32,
    /// Added to a pair's similarity when they name the same fine place.
    pub fine_place_bonus: f32,
    /// Taken off when they name no common fine place (linked by a title word only): without
    /// the place as evidence the matter must be closer.
    pub no_place_malus: f32,
    /// Same reporter, same place: a repeat at this similarity.
    pub repeat_same_reporter: f32,
    /// Different reporters, same fine place: the same matter at this similarity.
    pub repeat_same_matter: f32,
    /// Near-identical text: a duplicate wherever it is.
    pub duplicate: f32,
}

impl Thresholds {
    pub const TFIDF: Thresholds = Thresholds {
        group_edge: 0.28,
        group_merge: 0.22,
        fine_place_bonus: 0.10,
        no_place_malus: 0.10,
        repeat_same_reporter: 0.35,
        repeat_same_matter: 0.45,
        duplicate: 0.90,
    };
    /// For e5-style embeddings (their cosines sit high: two unrelated complaints of one county
    /// score ~0.9). Tuned on hot_messages.jsonl with e5-small: 0.90/0.88 glued a county's road
    /// and traffic complaints into one group.
    pub const EMBEDDING: Thresholds = Thresholds {
        group_edge: 0.93,
        group_merge: 0.92,
        fine_place_bonus: 0.02,
        no_place_malus: 0.02,
        repeat_same_reporter: 0.92,
        repeat_same_matter: 0.95,
        duplicate: 0.985,
    };
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Two tickets are compared only when at most this many days apart (hot issues).
    pub window_days: f64,
    /// Repeats look this far back.
    pub repeat_window_days: f64,
    /// Each ticket is compared with at most this many neighbours in time per block.
    pub max_neighbors: usize,
    /// Fine places per ticket used as block keys.
    pub max_place_keys: usize,
    /// Title bigrams used as block keys for tickets with no fine place in the title.
    pub matter_keys: usize,
    /// Smallest group reported as a hot issue.
    pub min_group: usize,
    /// Hot issues listed.
    pub top: usize,
    /// 每周一题: a group seen in at least this many distinct ISO weeks.
    pub weekly_min_weeks: usize,
    /// Trends compare the last `period_weeks` ISO weeks with the ones before.
    pub period_weeks: u32,
    pub tfidf: TfIdfConfig,
    pub tfidf_thresholds: Thresholds,
    pub embedding_thresholds: Thresholds,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_days: 30.0,
            repeat_window_days: 180.0,
            max_neighbors: 200,
            max_place_keys: 4,
            matter_keys: 4,
            min_group: 2,
            top: 20,
            weekly_min_weeks: 3,
            period_weeks: 1,
            tfidf: TfIdfConfig::default(),
            tfidf_thresholds: Thresholds::TFIDF,
            embedding_thresholds: Thresholds::EMBEDDING,
        }
    }
}

/// Tickets prepared once for every analysis: places, matter vectors, block keys.
pub struct Corpus<'a> {
    pub tickets: &'a [Ticket],
    pub places: Vec<Place>,
    pub tfidf: TfIdf,
    /// TF-IDF of title + text with the place names taken out (always built: blocking and
    /// naming use it even when embeddings decide similarity).
    pub sparse: Vec<SparseVec>,
    /// L2-normalized embeddings, when every ticket has one of the same length.
    pub dense: Option<Vec<Vec<f32>>>,
    /// Interned fine-place block keys per ticket (sorted).
    pub fine_keys: Vec<Vec<u32>>,
    /// Whether a ticket's title names a fine place.
    pub title_place: Vec<bool>,
    /// Interned title-bigram block keys per ticket (for those with no fine place in the title).
    pub matter_keys: Vec<Vec<u32>>,
    pub key_names: Vec<String>,
    /// The matter text (title, text) with place names blanked.
    pub matter_title: Vec<String>,
    pub matter_text: Vec<String>,
}

impl<'a> Corpus<'a> {
    pub fn build(tickets: &'a [Ticket], cfg: &Config) -> Corpus<'a> {
        Self::build_with(tickets, cfg, None)
    }

    /// With a TF-IDF fitted elsewhere (read-only; the corpus's own terms are not added).
    pub fn build_with(tickets: &'a [Ticket], cfg: &Config, fitted: Option<&TfIdf>) -> Corpus<'a> {
        let places: Vec<Place> = tickets.iter().map(ticket_place).collect();
        let mut matter_title = Vec::with_capacity(tickets.len());
        let mut matter_text = Vec::with_capacity(tickets.len());
        for (t, p) in tickets.iter().zip(&places) {
            let mut names = p.surface_names();
            names.extend(["A市".into(), "a市".into(), "西地省".into()]);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            matter_title.push(text::blank_out(&t.title, &refs));
            matter_text.push(text::blank_out(&t.text, &refs));
        }
        let (mut tfidf, grow) = match fitted {
            Some(f) => (f.clone(), false),
            None => (TfIdf::fit(cfg.tfidf.clone(), matter_title.iter().map(String::as_str).zip(matter_text.iter().map(String::as_str))), true),
        };
        let sparse: Vec<SparseVec> = (0..tickets.len()).map(|i| tfidf.vectorize(&matter_title[i], &matter_text[i], grow)).collect();
        let dense = dense_vectors(tickets);
        let mut interner: HashMap<String, u32> = HashMap::new();
        let mut key_names = Vec::new();
        let mut intern = |k: String, names: &mut Vec<String>| -> u32 {
            let n = interner.len() as u32;
            *interner.entry(k.clone()).or_insert_with(|| {
                names.push(k);
                n
            })
        };
        let mut fine_keys = Vec::with_capacity(tickets.len());
        let mut title_place = Vec::with_capacity(tickets.len());
        let mut matter_keys = Vec::with_capacity(tickets.len());
        for (i, p) in places.iter().enumerate() {
            let mut f: Vec<u32> = p.block_keys(cfg.max_place_keys).into_iter().map(|k| intern(format!("F:{k}"), &mut key_names)).collect();
            f.sort_unstable();
            f.dedup();
            fine_keys.push(f);
            let tp = p.mentions.iter().any(|m| m.in_title);
            title_place.push(tp);
            let mut m = Vec::new();
            if !tp {
                for b in top_title_bigrams(&tfidf, &matter_title[i], &matter_text[i], cfg.matter_keys) {
                    m.push(intern(format!("M:{b}"), &mut key_names));
                }
            }
            m.sort_unstable();
            m.dedup();
            matter_keys.push(m);
        }
        Corpus { tickets, places, tfidf, sparse, dense, fine_keys, title_place, matter_keys, key_names, matter_title, matter_text }
    }

    pub fn len(&self) -> usize {
        self.tickets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    pub fn kind(&self) -> SimilarityKind {
        if self.dense.is_some() {
            SimilarityKind::Embedding
        } else {
            SimilarityKind::TfIdf
        }
    }

    pub fn thresholds(&self, cfg: &Config) -> Thresholds {
        match self.kind() {
            SimilarityKind::Embedding => cfg.embedding_thresholds,
            SimilarityKind::TfIdf => cfg.tfidf_thresholds,
        }
    }

    /// Matter similarity of tickets i and j.
    pub fn sim(&self, i: usize, j: usize) -> f32 {
        match &self.dense {
            Some(d) => d[i].iter().zip(&d[j]).map(|(a, b)| a * b).sum(),
            None => self.sparse[i].dot(&self.sparse[j]),
        }
    }

    pub fn centroid(&self, i: usize) -> Centroid {
        match &self.dense {
            Some(d) => Centroid::dense(&d[i]),
            None => Centroid::sparse(&self.sparse[i]),
        }
    }

    /// Whether i and j name a common fine place.
    pub fn shares_fine(&self, i: usize, j: usize) -> bool {
        let (a, b) = (&self.fine_keys[i], &self.fine_keys[j]);
        let (mut x, mut y) = (0, 0);
        while x < a.len() && y < b.len() {
            match a[x].cmp(&b[y]) {
                std::cmp::Ordering::Less => x += 1,
                std::cmp::Ordering::Greater => y += 1,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Whether i and j can be about the same place: districts and towns agree where both are
    /// known, and two tickets whose titles name different fine places are apart.
    pub fn place_compatible(&self, i: usize, j: usize) -> bool {
        if !self.places[i].compatible(&self.places[j]) {
            return false;
        }
        if self.title_place[i] && self.title_place[j] && !self.shares_fine(i, j) {
            return false;
        }
        true
    }

    /// Call `f(i, j)` (i < j by time) for every candidate pair: tickets sharing a block key
    /// (a fine place; or, for tickets with no fine place in the title, a distinctive title
    /// bigram; or, with `by_reporter`, the reporter), at most `window_ms` apart and at most
    /// `max_neighbors` apart in the block's time order. A pair sharing several keys is
    /// offered once per key. Cost: O(tickets × keys × max_neighbors), never all pairs.
    pub fn candidate_pairs(&self, window_ms: i64, max_neighbors: usize, by_reporter: bool, mut f: impl FnMut(usize, usize)) {
        let mut blocks: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut reporter_blocks: HashMap<&str, Vec<u32>> = HashMap::new();
        for i in 0..self.len() {
            for &k in self.fine_keys[i].iter().chain(&self.matter_keys[i]) {
                blocks.entry(k).or_default().push(i as u32);
            }
            if by_reporter {
                if let Some(r) = self.tickets[i].reporter.as_deref().filter(|r| !r.is_empty()) {
                    reporter_blocks.entry(r).or_default().push(i as u32);
                }
            }
        }
        let mut all: Vec<Vec<u32>> = blocks.into_values().collect();
        all.extend(reporter_blocks.into_values());
        for b in &mut all {
            b.sort_by_key(|&i| (self.tickets[i as usize].time_ms, i));
        }
        all.sort();
        for b in &all {
            for x in 0..b.len() {
                let i = b[x] as usize;
                let ti = self.tickets[i].time_ms;
                for &jj in b.iter().skip(x + 1).take(max_neighbors) {
                    let j = jj as usize;
                    if self.tickets[j].time_ms - ti > window_ms {
                        break;
                    }
                    f(i, j);
                }
            }
        }
    }
}

/// The place of a ticket: what its title and text name, with its known place label
/// ("南城街道·鸿福路", as [`Place::label`] writes it) and town taking precedence.
pub fn ticket_place(t: &Ticket) -> Place {
    let mut p = place::extract(&t.title, &t.text);
    if let Some(label) = t.place.as_deref().filter(|s| !s.trim().is_empty()) {
        let known = place::from_label(label);
        if known.district.is_some() {
            p.district = known.district;
        }
        if known.town.is_some() {
            p.town = known.town;
        }
        for m in known.mentions.into_iter().rev() {
            p.mentions.retain(|x| x.key != m.key);
            p.mentions.insert(0, m);
        }
    }
    if let Some(town) = t.town.as_deref().filter(|s| !s.trim().is_empty()) {
        let k = place::extract(town, "");
        match (k.district, k.town) {
            (_, Some(tn)) => p.town = Some(tn),
            (Some(d), None) => p.district = Some(d),
            (None, None) => p.town = Some(town.trim().to_string()),
        }
    }
    p
}

fn dense_vectors(tickets: &[Ticket]) -> Option<Vec<Vec<f32>>> {
    let dim = tickets.first()?.embedding.as_ref()?.len();
    if dim == 0 || !tickets.iter().all(|t| t.embedding.as_ref().is_some_and(|e| e.len() == dim)) {
        return None;
    }
    Some(tickets.iter().map(|t| similarity::l2_normalized(t.embedding.as_ref().unwrap())).collect())
}

/// Title bigrams that name the matter: seen in at least two tickets but in at most
/// `max(20, N/200)`, the most frequent of those first (the rarest are mostly bigrams across a
/// word boundary, the most frequent are words like 问题 that name nothing).
fn top_title_bigrams(tfidf: &TfIdf, title: &str, body: &str, n: usize) -> Vec<String> {
    let src = if text::runs(title).iter().map(Vec::len).sum::<usize>() >= 4 { title.to_string() } else { format!("{title} {}", body.chars().take(60).collect::<String>()) };
    let max_df = 20.max(tfidf.docs() / 200);
    let mut seen = std::collections::HashSet::new();
    let mut cands: Vec<(std::cmp::Reverse<u32>, String)> = Vec::new();
    text::bigrams(&src, usize::MAX, |k| {
        if seen.insert(k) {
            let s = text::bigram_str(k);
            let df = tfidf.df_of(&s);
            if (2..=max_df).contains(&df) && !s.chars().all(|c| c.is_ascii_digit()) {
                cands.push((std::cmp::Reverse(df), s));
            }
        }
    });
    cands.sort();
    cands.into_iter().take(n).map(|x| x.1).collect()
}

/// Everything the CLI reports, for one set of tickets.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub source: String,
    pub tickets: usize,
    pub similarity: SimilarityKind,
    pub config: Config,
    pub hot: HotReport,
    pub weekly: Vec<WeeklyCandidate>,
    pub repeats: RepeatReport,
    pub trends: Trends,
}

impl Analysis {
    pub fn run(tickets: &[Ticket], cfg: &Config, source: &str) -> Analysis {
        let corpus = Corpus::build(tickets, cfg);
        let hot = hot::hot_issues(&corpus, cfg);
        let weekly = hot::weekly_candidates(&hot, cfg.weekly_min_weeks);
        let repeats = repeats::repeats(&corpus, cfg);
        let trends = trends::trends(tickets, Some(&corpus.places), cfg);
        Analysis { source: source.to_string(), tickets: tickets.len(), similarity: corpus.kind(), config: cfg.clone(), hot, weekly, repeats, trends }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Input { path: String, line: usize, msg: String },
}
