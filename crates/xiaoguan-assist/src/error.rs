//! Errors of the assist layer, split by whose fault they are.

#[derive(Debug, thiserror::Error)]
pub enum AssistError {
    /// The caller's input is wrong (empty question, bad rules file, unreadable dataset line…).
    #[error("{0}")]
    InvalidInput(String),
    /// A named thing does not exist (unknown KB, missing classifier artifact).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Kb(#[from] xiaoguan_kb::KbError),
    #[error(transparent)]
    Model(#[from] xiaoguan_models::ModelError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    /// A broken artifact or an internal invariant.
    #[error("{0}")]
    Internal(String),
}

impl AssistError {
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        AssistError::Io { action, path: path.display().to_string(), source }
    }
    pub fn is_user_error(&self) -> bool {
        match self {
            AssistError::InvalidInput(_) | AssistError::NotFound(_) => true,
            AssistError::Kb(k) => k.is_user_error(),
            AssistError::Model(m) => m.is_user_error(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, AssistError>;
