//! The assist layer of xiaoguan: what hotline agents and the 小莞 assistant get back.
//! Routing, the evidence gate, canonical FAQ answers, grounded generation with verification,
//! structured facts, extractive answers, ticket assist (masking, summary, type, domain,
//! dispatch, 弱信号), and the classifiers behind them. Knows nothing of HTTP.

pub mod classify;
pub mod dispatch;
pub mod embed_cache;
pub mod error;
pub mod history;
pub mod jurisdiction;
pub mod lexical;
pub mod metrics;
pub mod qa;
pub mod setup;
pub mod signals;
pub mod summary;
pub mod ticket;
pub mod units;

pub use error::{AssistError, Result};
