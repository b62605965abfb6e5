//! The grounded-generation prompt: numbered sources packed into a token budget, an instruction to
//! answer in Chinese from those sources only and to cite them as [1], [2]…

use xiaoguan_models::{ChatMessage, Generator, Role};

pub const SYSTEM: &str = "你是政务服务助手“小莞”。请只根据给出的资料，用简体中文回答用户的问题，简洁、准确，不要编造。\
引用资料时在句末注明来源编号，格式为“答案内容。[1]”。资料中没有答案时，只回答“资料中没有相关内容”。";

/// One numbered source as the model sees it.
pub fn source_block(n: usize, title: &str, heading: &str, text: &str) -> String {
    let head = if heading.is_empty() || heading == title { format!("《{title}》") } else { heading.to_string() };
    format!("[{n}] {head}\n{text}")
}

/// Messages for the generator; sources are taken in order until `max_tokens` of context is used
/// (at least one, cut to fit). Returns the messages and how many sources went in.
pub fn build(generator: &dyn Generator, question: &str, sources: &[String], max_tokens: usize) -> xiaoguan_models::Result<(Vec<ChatMessage>, usize)> {
    let mut used = generator.count_tokens(SYSTEM)? + generator.count_tokens(question)? + 32;
    let mut blocks: Vec<String> = Vec::new();
    for s in sources {
        let t = generator.count_tokens(s)?;
        if used + t > max_tokens {
            if blocks.is_empty() {
                // The best source alone is too long: keep its head.
                let keep = (s.chars().count() * (max_tokens.saturating_sub(used)) / t.max(1)).max(80);
                blocks.push(s.chars().take(keep).collect());
            }
            break;
        }
        used += t;
        blocks.push(s.clone());
    }
    // The question comes before and after the sources: small models lose it behind long context.
    let user = format!("问题：{question}\n\n资料：\n{}\n\n请根据以上资料回答问题：{question}", blocks.join("\n\n"));
    Ok((vec![ChatMessage::new(Role::System, SYSTEM), ChatMessage::new(Role::User, user)], blocks.len()))
}
