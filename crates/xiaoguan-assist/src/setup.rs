//! Wiring from a settings file (`assist.toml`) to a ready assistant and ticket assist: open the
//! knowledge bases, load the generator, the rules and the classifier heads. Shared by the CLI and
//! the HTTP service so both answer identically.

use crate::classify::spec::toml_error;
use crate::classify::ClassifierModel;
use crate::dispatch::DispatchRules;
use crate::error::{AssistError, Result};
use crate::qa::facts::FactIndex;
use crate::qa::{AssistConfig, Assistant};
use crate::ticket::{TicketAssist, TicketClassifiers};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xiaoguan_kb::{definition, KnowledgeBase};
use xiaoguan_models::registry::ModelRegistry;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierNames {
    pub request_type: Option<String>,
    pub domain: Option<String>,
    pub category_l1: Option<String>,
    pub department: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchSettings {
    /// Weight of a matched 权责 rule against the department classifier's distribution (sums to 1).
    pub rule_bonus: f32,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self { rule_bonus: 0.15 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kbs: Vec<String>,
    #[serde(default)]
    pub generator: Option<String>,
    #[serde(default)]
    pub rules: Option<PathBuf>,
    #[serde(default)]
    pub classifiers: ClassifierNames,
    #[serde(default)]
    pub answer: AssistConfig,
    #[serde(default)]
    pub dispatch: DispatchSettings,
    /// The region the service answers for (`[home] province = "广东省"`, `city = "东莞市"`):
    /// another region's local texts are references, never the rule that applies.
    #[serde(default)]
    pub home: Option<crate::jurisdiction::HomeRegion>,
    /// Where the knowledge bases are stored: embedded (default) or a Qdrant server.
    #[serde(default)]
    pub store: xiaoguan_kb::StoreSettings,
    /// Folder the relative paths are resolved against.
    #[serde(skip)]
    pub base: PathBuf,
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!("{}: no such settings file", path.display())),
            _ => AssistError::io("read", path, e),
        })?;
        let mut s: Settings = toml::from_str(&text).map_err(|e| AssistError::InvalidInput(format!("{}: {}", path.display(), toml_error(&text, &e))))?;
        s.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if s.kbs.is_empty() {
            return Err(AssistError::InvalidInput(format!("{}: `kbs` lists no knowledge base", path.display())));
        }
        Ok(s)
    }

    pub fn rules_path(&self) -> Option<PathBuf> {
        self.rules.as_ref().map(|r| self.base.join(r))
    }
}

/// Where things live on disk.
pub struct Paths {
    pub kb_dir: PathBuf,
    pub kbs_root: PathBuf,
    pub classifiers_root: PathBuf,
    /// The opened store backend (`Settings::store`, connected).
    pub store: xiaoguan_kb::StoreBackend,
}

/// Open the settings' knowledge bases (those not ingested are reported and left out).
pub fn open_kbs(reg: &ModelRegistry, paths: &Paths, ids: &[String]) -> Result<(Vec<Arc<KnowledgeBase>>, Vec<String>)> {
    let defs = definition::load_all(&paths.kb_dir).map_err(xiaoguan_kb::KbError::from)?;
    let mut kbs = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        let def = definition::find(&defs, id).map_err(xiaoguan_kb::KbError::from)?;
        if paths.store.load_state(&paths.kbs_root, id)?.is_none() {
            missing.push(id.clone());
            continue;
        }
        let embedder = reg.embedder(&def.embedder)?;
        kbs.push(Arc::new(KnowledgeBase::open_in(def, &paths.kbs_root, embedder, &paths.store)?));
    }
    Ok((kbs, missing))
}

pub fn load_rules(settings: &Settings) -> Result<DispatchRules> {
    match settings.rules_path() {
        Some(p) => DispatchRules::load(&p),
        None => Ok(DispatchRules::default()),
    }
}

/// The assistant over the settings' KBs; `with_generator` loads the generator too.
pub fn assistant(reg: &ModelRegistry, paths: &Paths, settings: &Settings, only: Option<&[String]>, with_generator: bool) -> Result<(Assistant, Vec<String>)> {
    let ids: Vec<String> = only.filter(|o| !o.is_empty()).map(<[String]>::to_vec).unwrap_or_else(|| settings.kbs.clone());
    let (kbs, missing) = open_kbs(reg, paths, &ids)?;
    if kbs.is_empty() {
        return Err(AssistError::InvalidInput(format!(
            "none of the knowledge bases {ids:?} is ingested: run `xiaoguan kb ingest {}`",
            ids.join(" ")
        )));
    }
    let generator = match (&settings.generator, with_generator) {
        (Some(g), true) => Some(reg.generator(g)?),
        _ => None,
    };
    let rules = load_rules(settings)?;
    let mut facts = FactIndex::build(&kbs, local_bundles(&rules))?;
    facts.embed_bundles(kbs[0].embedder().as_ref())?;
    let mut config = settings.answer.clone();
    if settings.home.is_some() {
        config.home = settings.home.clone();
    }
    Ok((Assistant::new(kbs, generator, facts, config)?, missing))
}

/// The rules' bundles with every unit named as the home city's unit directory names it.
pub fn local_bundles(rules: &DispatchRules) -> Vec<crate::dispatch::Bundle> {
    rules.bundles.iter().map(|b| rules.localized(b)).collect()
}

fn classifier(paths: &Paths, name: &Option<String>) -> Result<Option<ClassifierModel>> {
    match name {
        None => Ok(None),
        Some(n) => {
            let dir = paths.classifiers_root.join(n);
            if dir.join("classifier.json").exists() {
                Ok(Some(ClassifierModel::load(&dir)?))
            } else {
                tracing::warn!("classifier '{n}' is not trained yet (`xiaoguan classify train {n}`); its field stays empty");
                Ok(None)
            }
        }
    }
}

pub fn ticket_assist(reg: &ModelRegistry, paths: &Paths, settings: &Settings, assistant: Option<Arc<Assistant>>) -> Result<TicketAssist> {
    let c = &settings.classifiers;
    let classifiers = TicketClassifiers {
        request_type: classifier(paths, &c.request_type)?,
        domain: classifier(paths, &c.domain)?,
        category_l1: classifier(paths, &c.category_l1)?,
        department: classifier(paths, &c.department)?,
    };
    let embedder_id = [&classifiers.request_type, &classifiers.domain, &classifiers.category_l1, &classifiers.department]
        .iter()
        .find_map(|m| m.as_ref().and_then(|m| m.meta.embedder.clone()));
    let embedder = match embedder_id {
        Some(id) => Some(reg.embedder(&id)?),
        None => None,
    };
    Ok(TicketAssist { classifiers, rules: load_rules(settings)?, embedder, assistant, rule_bonus: settings.dispatch.rule_bonus })
}
