//! Character-level lexical similarity for Chinese: bigram sets, Dice, containment, and the
//! "content" of a question with its question words removed. Used by canonical matching,
//! the evidence gate, sentence selection and answer verification.

use std::collections::HashSet;

/// Words that say what is asked, not what it is about.
pub const QUESTION_WORDS: &[&str] = &[
    "请问一下", "请问", "我想问一下", "我想问", "想咨询一下", "想咨询", "咨询一下", "咨询", "你好", "您好", "领导", "谢谢",
    "如何办理", "怎么办理", "怎样办理", "在哪里办理", "去哪里办", "哪里办", "如何", "怎么", "怎样", "什么", "哪些", "哪个",
    "是否", "可以吗", "能不能", "能否", "可不可以", "多少", "多久", "多长时间", "吗", "呢", "啊", "吧", "需要", "办理", "一下",
];

/// Text reduced to Han characters, letters and digits.
pub fn letters(text: &str) -> Vec<char> {
    xiaoguan_text::normalize(text).chars().filter(|c| c.is_alphanumeric()).collect()
}

pub fn bigrams(chars: &[char]) -> HashSet<(char, char)> {
    if chars.len() == 1 {
        return std::iter::once((chars[0], '\0')).collect();
    }
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// The question's topic: question words removed.
pub fn content(text: &str) -> Vec<char> {
    let mut t = xiaoguan_text::normalize(text);
    for w in QUESTION_WORDS {
        t = t.replace(w, " ");
    }
    // Bigrams must not join characters across a removed word.
    t.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect()
}

/// Bigrams of `text` that do not cross a removed word or punctuation.
pub fn content_bigrams(text: &str) -> HashSet<(char, char)> {
    let chars = content(text);
    let mut out = HashSet::new();
    for piece in chars.split(|c| *c == ' ').filter(|p| !p.is_empty()) {
        out.extend(bigrams(piece));
    }
    out
}

/// Dice coefficient of two bigram sets (1 = same set).
pub fn dice(a: &HashSet<(char, char)>, b: &HashSet<(char, char)>) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    2.0 * a.intersection(b).count() as f32 / (a.len() + b.len()) as f32
}

/// Fraction of `part`'s bigrams found in `whole`.
pub fn containment(part: &HashSet<(char, char)>, whole: &HashSet<(char, char)>) -> f32 {
    if part.is_empty() {
        return 0.0;
    }
    part.intersection(whole).count() as f32 / part.len() as f32
}

/// Numbers written in a text (Arabic digits and Chinese numerals), normalized to strings.
pub fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in xiaoguan_text::normalize(text).chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || (c == '.' && !cur.is_empty()) {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(cur.trim_end_matches('.').to_string());
            cur.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_drops_question_words() {
        let a = content_bigrams("请问失业保险金怎么领取？");
        let b = content_bigrams("失业保险金领取");
        assert!(dice(&a, &b) > 0.8, "{}", dice(&a, &b));
        assert!(!a.contains(&('问', '失')));
    }

    #[test]
    fn containment_and_numbers() {
        let s = bigrams(&letters("最长领取24个月"));
        let w = bigrams(&letters("失业保险金最长领取24个月，缴费满10年"));
        assert_eq!(containment(&s, &w), 1.0);
        assert_eq!(numbers("缴费满10年，领取24个月，比例为1.5%"), vec!["10", "24", "1.5"]);
        assert_eq!(dice(&HashSet::new(), &HashSet::new()), 0.0);
    }
}
