//! Loads each model once and shares it (`Arc`) between every caller.

use crate::embed::{BertEmbedder, Embedder};
use crate::error::{ModelError, Result};
use crate::generate::{Generator, QwenGenerator};
use crate::manifest::{self, Manifest, ModelKind};
use crate::store::ModelStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct ModelRegistry {
    store: ModelStore,
    manifests: Vec<Manifest>,
    embedders: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    generators: Mutex<HashMap<String, Arc<dyn Generator>>>,
}

impl ModelRegistry {
    pub fn new(store: ModelStore, manifests: Vec<Manifest>) -> Self {
        Self { store, manifests, embedders: Mutex::default(), generators: Mutex::default() }
    }

    pub fn store(&self) -> &ModelStore {
        &self.store
    }
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }
    pub fn manifest(&self, id: &str) -> Result<Manifest> {
        manifest::find(&self.manifests, id)
    }

    pub fn embedder(&self, id: &str) -> Result<Arc<dyn Embedder>> {
        // Held across the load so two callers never load the same model twice.
        let mut cache = self.embedders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = cache.get(id) {
            return Ok(e.clone());
        }
        let m = self.manifest(id)?;
        let facts = match (m.kind, &m.embed) {
            (ModelKind::Embed, Some(f)) => f,
            _ => return Err(ModelError::InvalidInput(format!("model '{id}' is not an embedder"))),
        };
        let dir = self.store.ready_dir(id)?;
        let e: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&dir, id, facts)?);
        cache.insert(id.to_string(), e.clone());
        Ok(e)
    }

    pub fn generator(&self, id: &str) -> Result<Arc<dyn Generator>> {
        let mut cache = self.generators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = cache.get(id) {
            return Ok(g.clone());
        }
        let m = self.manifest(id)?;
        let facts = match (m.kind, &m.generate) {
            (ModelKind::Generate, Some(f)) => f,
            _ => return Err(ModelError::InvalidInput(format!("model '{id}' is not a generator"))),
        };
        let dir = self.store.ready_dir(id)?;
        let g: Arc<dyn Generator> = Arc::new(QwenGenerator::load(&dir, id, facts)?);
        cache.insert(id.to_string(), g.clone());
        Ok(g)
    }
}

/// Use `n` threads for candle's CPU kernels (call before the first inference).
pub fn set_threads(n: usize) {
    if n > 0 {
        // candle and rayon both read this at first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
