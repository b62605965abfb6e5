//! A persistent cache of embeddings, keyed by model, text kind and text: training and evaluation
//! embed the same thousands of rows again and again. One append-only file per model; a torn
//! last record (a killed run) is ignored on load.

use crate::error::{AssistError, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use xiaoguan_models::{Embedder, TextKind};

const KEY: usize = 16;

pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    map: HashMap<[u8; KEY], Vec<f32>>,
}

fn key(model: &str, kind: TextKind, text: &str) -> [u8; KEY] {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0, matches!(kind, TextKind::Query) as u8, 0]);
    h.update(text.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; KEY];
    k.copy_from_slice(&d[..KEY]);
    k
}

impl EmbeddingCache {
    /// Open (or start) the cache of `embedder` under `dir`.
    pub fn open(dir: &Path, embedder: &dyn Embedder) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| AssistError::io("create", dir, e))?;
        let dim = embedder.dimension();
        let path = dir.join(format!("{}-{dim}.bin", embedder.model_id()));
        let mut map = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let record = KEY + dim * 4;
            for r in bytes.chunks_exact(record) {
                let mut k = [0u8; KEY];
                k.copy_from_slice(&r[..KEY]);
                let v = r[KEY..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                map.insert(k, v);
            }
        }
        Ok(Self { path, dim, map })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Embeddings of `texts`, computing (in batches, with `progress` called after each) only the missing ones.
    pub fn embed(
        &mut self,
        embedder: &dyn Embedder,
        texts: &[String],
        kind: TextKind,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let model = embedder.model_id().to_string();
        let keys: Vec<[u8; KEY]> = texts.iter().map(|t| key(&model, kind, t)).collect();
        let mut missing: Vec<usize> = (0..texts.len()).filter(|&i| !self.map.contains_key(&keys[i])).collect();
        missing.sort_by_key(|&i| texts[i].len());
        missing.dedup_by_key(|i| keys[*i]);
        progress(texts.len() - missing.len());
        if !missing.is_empty() {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| AssistError::io("open", &self.path, e))?;
            for batch in missing.chunks(32) {
                let refs: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
                let vecs = embedder.embed(&refs, kind)?;
                let mut buf = Vec::with_capacity(batch.len() * (KEY + self.dim * 4));
                for (&i, v) in batch.iter().zip(vecs) {
                    buf.extend_from_slice(&keys[i]);
                    buf.extend(v.iter().flat_map(|x| x.to_le_bytes()));
                    self.map.insert(keys[i], v);
                }
                file.write_all(&buf).map_err(|e| AssistError::io("append to", &self.path, e))?;
                progress(batch.len());
            }
        }
        Ok(keys.iter().map(|k| self.map[k].clone()).collect())
    }
}
