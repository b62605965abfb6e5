//! The text layer of xiaoguan: Chinese normalization, sentence splitting, document structure
//! (章/节/条, 一、/（一）), chunking and personal-data masking. Pure computation: knows nothing of models, storage or HTTP.

pub mod chunk;
pub mod mask;
pub mod numerals;
pub mod normalize;
pub mod sentences;
pub mod structure;

pub use chunk::{chunk_document, Chunk, ChunkConfig};
pub use mask::{mask_pii, Masked, PiiKind};
pub use normalize::{fold_for_search, normalize, to_simplified};
pub use structure::{parse_law_markdown, parse_plain, Block, Document};
