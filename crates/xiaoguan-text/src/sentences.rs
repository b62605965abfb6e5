//! Chinese sentence splitting: ends at 。！？；!? (and … runs), keeping closing quotes and
//! brackets with the sentence they close; a newline always ends a sentence.

fn is_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '；' | '!' | '?' | ';' | '…')
}

fn is_closer(c: char) -> bool {
    matches!(c, '”' | '’' | '」' | '』' | '）' | ')' | '》' | '"' | '\'' | '】')
}

/// Sentences of `text` (trimmed, non-empty); joining them gives the text back minus whitespace at the cuts.
pub fn split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let mut end = None;
        if c == '\n' {
            end = Some(i);
        } else if is_terminal(c) {
            let mut e = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if is_terminal(d) || is_closer(d) {
                    e = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            end = Some(e);
        }
        if let Some(e) = end {
            let s = text[start..e].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = if c == '\n' { e + 1 } else { e };
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_chinese_terminals_and_keeps_closers() {
        assert_eq!(split("第一句。第二句！他说：“好。”然后？"), ["第一句。", "第二句！", "他说：“好。”", "然后？"]);
        assert_eq!(split("一行\n两行；三。。。"), ["一行", "两行；", "三。。。"]);
        assert_eq!(split("没有标点"), ["没有标点"]);
        assert!(split("  \n ").is_empty());
    }
}
