//! What both backends share so that one knowledge base ranks the same on either: the BM25
//! model (Multilingual tokenizer: charabia, jieba segmentation for Chinese) that turns text
//! into sparse term weights on the client, and how a date in a filter is read. The IDF part
//! of BM25 comes from the collection (`Modifier::Idf`), on the embedded shard and on a server.

use crate::types::{Result, StoreError};
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::ordered_float::NotNan;
use qdrant_edge::{DateTimeWrapper, TokenizerType};

pub(crate) fn model() -> EdgeBm25 {
    EdgeBm25::new(EdgeBm25Config {
        tokenizer: TokenizerType::Multilingual,
        language: Some("chinese".into()),
        // Chunks are a few hundred characters: about 120 segmented tokens.
        avg_len: NotNan::new(120.0).expect("not NaN"),
        ..Default::default()
    })
    .expect("static BM25 configuration is valid")
}

/// "2018-12-29" or RFC 3339, as Qdrant reads datetimes.
pub(crate) fn parse_date(s: &str) -> Result<DateTimeWrapper> {
    s.trim().parse::<DateTimeWrapper>().map_err(|_| StoreError::InvalidRequest(format!("'{s}' is not a date (YYYY-MM-DD)")))
}
