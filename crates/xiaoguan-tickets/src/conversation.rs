//! Conversations of the native answer API (`conversation_id` in `POST /v1/ask`): the turns kept
//! per (owner, id), so any service replica on the same store can continue a conversation another
//! one started. The owner is the API key id ("open" without keys): an id is only visible to the
//! key that started it.
//!
//! The content is masked like every other text the store keeps (no raw phone or ID number in
//! the database); the follow-up rewriting that reads it back only needs the topic words.

use crate::{Result, StoreError};
use serde::{Deserialize, Serialize};

/// The longest conversation id the store accepts, in characters.
pub const MAX_CONVERSATION_ID_CHARS: usize = 200;

/// One turn: `role` is the caller's word ("user", "assistant"); the store does not interpret it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationTurn {
    pub role: String,
    pub content: String,
}

impl ConversationTurn {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// The caller's mistakes, refused before any SQL runs.
pub(crate) fn check_key(owner: &str, id: &str) -> Result<()> {
    if owner.is_empty() {
        return Err(StoreError::InvalidInput("a conversation needs an owner (the API key id)".into()));
    }
    if id.is_empty() {
        return Err(StoreError::InvalidInput("the conversation id is empty".into()));
    }
    // PostgreSQL's TEXT cannot hold NUL: refused on both backends alike, as the caller's fault.
    if owner.contains('\0') || id.contains('\0') {
        return Err(StoreError::InvalidInput("a conversation id or owner contains a NUL character".into()));
    }
    let n = id.chars().count();
    if n > MAX_CONVERSATION_ID_CHARS {
        return Err(StoreError::InvalidInput(format!("the conversation id has {n} characters, more than {MAX_CONVERSATION_ID_CHARS}")));
    }
    Ok(())
}

pub(crate) fn check_append(owner: &str, id: &str, turns: &[ConversationTurn], max_turns: usize) -> Result<()> {
    check_key(owner, id)?;
    if max_turns == 0 {
        return Err(StoreError::InvalidInput("max_turns is 0: a conversation must keep at least one turn".into()));
    }
    if turns.len() > max_turns {
        return Err(StoreError::InvalidInput(format!("{} turns appended at once, more than max_turns ({max_turns})", turns.len())));
    }
    if let Some(i) = turns.iter().position(|t| t.role.is_empty()) {
        return Err(StoreError::InvalidInput(format!("conversation turn {i} has no role")));
    }
    Ok(())
}

/// Turns as they are written: content masked, NUL characters dropped (PostgreSQL's TEXT cannot
/// hold them, and they carry nothing a follow-up needs), so both backends store the same text.
pub(crate) fn masked(turns: &[ConversationTurn]) -> Vec<ConversationTurn> {
    turns.iter().map(|t| ConversationTurn { role: t.role.replace('\0', ""), content: crate::record::mask(&t.content).replace('\0', "") }).collect()
}
