//! Copying a knowledge base between backends (the embedded store and a Qdrant server, either
//! way): its points with both vectors as stored, so nothing is embedded or tokenized again, then
//! its committed state. The state is written last, so a copy that stops half way is never
//! answered from; running it again with `replace` starts over.

use crate::kb::KnowledgeBase;
use crate::{KbError, Result};
use serde::Serialize;
use std::time::Instant;
use xiaoguan_store::Filter;

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub kb: String,
    pub from: String,
    pub to: String,
    pub version: u64,
    pub documents: usize,
    pub points: usize,
    pub seconds: f64,
}

/// Copy `src` into `dst` (the same definition opened on two backends). A target that already
/// holds points is refused unless `replace`, which deletes them first.
pub fn copy(src: &KnowledgeBase, dst: &KnowledgeBase, replace: bool, progress: bool) -> Result<MigrateReport> {
    if src.def.id != dst.def.id {
        return Err(KbError::InvalidQuery(format!("cannot copy '{}' into '{}'", src.def.id, dst.def.id)));
    }
    let id = &src.def.id;
    let started = Instant::now();
    // Neither side may change while the copy runs.
    let _src_lease = src.backend().lease(id)?;
    let _dst_lease = dst.backend().lease(id)?;
    src.reload_if_moved()?;
    let state = src.state();
    if state.documents.is_empty() {
        return Err(KbError::NotIngested(id.clone()));
    }
    let existing = dst.store().count(&Filter::none())?;
    if existing > 0 {
        if !replace {
            return Err(KbError::InvalidQuery(format!(
                "the target ({}) already holds {existing} points of '{id}': pass --replace to overwrite them",
                dst.backend_description()
            )));
        }
        // Every point carries its KB's id.
        dst.store().delete(&Filter::eq("kb", id.as_str()))?;
    }
    let total = src.store().count(&Filter::none())?;
    let bar = xiaoguan_models::progress::bar(total as u64, "migrate [{bar:30}] {pos}/{len} points {per_sec} {eta}", progress);
    let mut offset = None;
    let mut copied = 0usize;
    loop {
        let (page, next) = src.store().export(offset, 256)?;
        copied += page.len();
        bar.inc(page.len() as u64);
        dst.store().import(page)?;
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    bar.finish_and_clear();
    dst.store().flush()?;
    dst.store().optimize()?;
    let landed = dst.store().count(&Filter::none())?;
    if landed != copied {
        return Err(KbError::Store(xiaoguan_store::StoreError::Backend {
            path: dst.backend_description(),
            message: format!("copied {copied} points but the target holds {landed}"),
        }));
    }
    // The state last: before it, the target answers from what it had (or not at all).
    let mut committed = state.clone();
    committed.revision = committed.revision.max(dst.state().revision);
    dst.commit_copied(committed)?;
    Ok(MigrateReport {
        kb: id.clone(),
        from: src.backend_description(),
        to: dst.backend_description(),
        version: state.version,
        documents: state.documents.len(),
        points: copied,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl KnowledgeBase {
    /// Commit a state copied from another backend (its revision moves on).
    fn commit_copied(&self, mut state: crate::state::KbState) -> Result<()> {
        state.revision += 1;
        self.keeper.save(&state)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        Ok(())
    }
}
