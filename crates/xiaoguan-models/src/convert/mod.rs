//! Turning registry downloads into ordinary model folders.
pub mod charsmap;
pub mod e5;
pub mod gguf;
pub mod hf_bert;
