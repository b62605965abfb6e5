//! Multi-turn: a follow-up ("那需要什么材料？", "它由哪个部门受理") is rewritten with the topic of
//! the previous question before retrieval, so search sees a self-contained question.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

const FOLLOW_UP_STARTS: &[&str] = &["那", "那么", "还有", "另外", "如果", "要是", "这个", "那个", "它", "该", "此", "上述", "还需要", "还要", "同时"];
const FOLLOW_UP_WORDS: &[&str] = &["它", "这个", "那个", "该事项", "上述", "这项", "此项", "这种情况", "呢"];
/// Words that carry no topic: stripped from the previous question when its topic is carried over.
const ASKING: &[&str] = &[
    "需要哪些材料", "哪些材料", "什么材料", "哪个部门受理", "哪个部门", "几个工作日", "多长时间", "多久", "怎么办理", "如何办理",
    "怎么办", "如何", "怎么", "是什么", "什么", "哪些", "吗", "呢", "？", "?", "请问",
];

fn looks_like_follow_up(q: &str) -> bool {
    let q = q.trim();
    q.chars().count() <= 8 || FOLLOW_UP_STARTS.iter().any(|w| q.starts_with(w)) || FOLLOW_UP_WORDS.iter().any(|w| q.contains(w))
}

fn topic_of(q: &str) -> String {
    let mut t = q.trim().to_string();
    for w in ASKING {
        t = t.replace(w, "");
    }
    t.trim_matches(|c: char| c.is_whitespace() || "，。,.！!".contains(c)).to_string()
}

/// The question to search with: unchanged unless it is a follow-up and there is an earlier user turn.
pub fn rewrite(question: &str, history: &[Turn]) -> Option<String> {
    if !looks_like_follow_up(question) {
        return None;
    }
    let previous = history.iter().rev().find(|t| t.role == Role::User && !t.content.trim().is_empty())?;
    let topic = topic_of(&previous.content);
    if topic.is_empty() || question.contains(&topic) {
        return None;
    }
    let mut q = question.trim().to_string();
    for w in ["那么", "那", "它", "这个", "该事项", "上述"] {
        if let Some(rest) = q.strip_prefix(w) {
            q = rest.trim_start_matches(['，', ',']).to_string();
        }
    }
    Some(format!("{topic}{q}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Turn {
        Turn { role: Role::User, content: s.into() }
    }

    #[test]
    fn follow_ups_take_the_previous_topic() {
        let h = vec![user("办理施工许可需要哪些材料？"), Turn { role: Role::Assistant, content: "……".into() }];
        assert_eq!(rewrite("那哪个部门受理？", &h).as_deref(), Some("办理施工许可哪个部门受理？"));
        assert_eq!(rewrite("承诺几个工作日？", &h).as_deref(), Some("办理施工许可承诺几个工作日？"));
        assert_eq!(rewrite("失业保险金怎么领？", &h), None, "a self-contained question stays");
        assert_eq!(rewrite("那哪个部门受理？", &[]), None, "no history, nothing to add");
    }
}
