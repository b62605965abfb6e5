//! Text normalization before splitting and indexing.
//!
//! Full-width ASCII letters, digits and the ideographic space become half-width; Chinese
//! punctuation (，。：（）) is kept, since it carries sentence structure. Zero-width characters
//! and the BOM are removed, line endings unified, runs of spaces collapsed, lines trimmed and
//! more than one blank line reduced to one.
//!
//! For matching only (never for the text shown or quoted), `fold_for_search` also folds
//! traditional characters to simplified (身份證 → 身份证): the corpus is simplified, and
//! qdrant-edge's BM25 does not fold them.

/// Half-width form of a full-width letter, digit or space; other characters unchanged.
pub fn half_width(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}')
}

pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in text.split('\n') {
        let mut cleaned = String::with_capacity(line.len());
        let mut last_space = false;
        for c in line.chars().filter(|c| !is_invisible(*c)).map(half_width) {
            let c = if c == '\t' || c == '\u{a0}' { ' ' } else { c };
            if c == ' ' {
                if last_space {
                    continue;
                }
                last_space = true;
            } else {
                last_space = false;
            }
            if !c.is_control() {
                cleaned.push(c);
            }
        }
        let cleaned = cleaned.trim();
        if cleaned.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        out.push_str(cleaned);
    }
    out
}

/// Traditional characters (and phrases, by OpenCC's tables) folded to simplified ones.
pub fn to_simplified(text: &str) -> std::borrow::Cow<'_, str> {
    character_converter::traditional_to_simplified(text)
}

/// A query or an index text as it is matched: normalized, then folded to simplified.
pub fn fold_for_search(text: &str) -> String {
    to_simplified(&normalize(text)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_widths_spaces_and_invisibles() {
        assert_eq!(normalize("ＡＢＣ公司\u{3000}２０２４年"), "ABC公司 2024年");
        assert_eq!(normalize("社保\u{200b}卡，丢了。"), "社保卡，丢了。");
        assert_eq!(normalize("  a \t  b  \r\n\r\n\r\n\nc\r\nd  "), "a b\n\nc\nd");
        assert_eq!(normalize("\u{feff}第一条\u{0007}"), "第一条");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn search_folding_matches_traditional_and_full_width_questions() {
        assert_eq!(fold_for_search("身份證補辦　需要什麼材料？"), "身份证补办 需要什么材料？");
        assert_eq!(fold_for_search("社會保險法第１６條"), "社会保险法第16条");
        // Simplified statute text is left as it is.
        let law = "参加基本养老保险的个人，达到法定退休年龄时累计缴费满十五年的，按月领取基本养老金。";
        assert_eq!(fold_for_search(law), law);
    }
}
