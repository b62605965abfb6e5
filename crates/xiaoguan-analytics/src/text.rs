//! Text helpers: a light normalization (full-width → half-width, lower case) and the
//! character runs the bigram features are taken from.

/// Full-width ASCII to half-width, ideographic space to space, ASCII lower case.
pub fn normalize_char(c: char) -> char {
    let c = match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    c.to_ascii_lowercase()
}

pub fn normalize(s: &str) -> String {
    s.chars().map(normalize_char).collect()
}

pub fn is_han(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF)
}

/// A character that carries content (Han, ASCII letter or digit); everything else splits runs.
pub fn is_word_char(c: char) -> bool {
    is_han(c) || c.is_ascii_alphanumeric()
}

/// Runs of word characters of the normalized text (punctuation and spaces split runs).
pub fn runs(s: &str) -> Vec<Vec<char>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for c in s.chars().map(normalize_char) {
        if is_word_char(c) {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A bigram's exact key: two code points packed into one integer (no hashing, no collisions).
#[inline]
pub fn bigram_key(a: char, b: char) -> u64 {
    ((a as u64) << 21) | b as u64
}

pub fn bigram_str(key: u64) -> String {
    let a = char::from_u32((key >> 21) as u32).unwrap_or('?');
    let b = char::from_u32((key & 0x1F_FFFF) as u32).unwrap_or('?');
    [a, b].iter().collect()
}

/// Character bigrams of each run (a one-character run gives nothing).
pub fn bigrams(s: &str, max_chars: usize, mut f: impl FnMut(u64)) {
    let mut seen = 0usize;
    for run in runs(s) {
        for w in run.windows(2) {
            f(bigram_key(w[0], w[1]));
        }
        seen += run.len();
        if seen >= max_chars {
            break;
        }
    }
}

/// Replace every occurrence of each needle by a space (used to take place names out of the
/// text before the matter is compared: two tickets in the same estate are not the same matter
/// because they share its name).
pub fn blank_out(s: &str, needles: &[&str]) -> String {
    let mut out = s.to_string();
    let mut needles: Vec<&str> = needles.iter().copied().filter(|n| !n.is_empty()).collect();
    needles.sort_by_key(|n| std::cmp::Reverse(n.chars().count()));
    for n in needles {
        if out.contains(n) {
            out = out.replace(n, " ");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_on_punctuation_and_fold_width() {
        let r = runs("Ａ3区，米兰春天G2栋");
        let r: Vec<String> = r.into_iter().map(|v| v.into_iter().collect()).collect();
        assert_eq!(r, vec!["a3区".to_string(), "米兰春天g2栋".to_string()]);
    }

    #[test]
    fn bigram_keys_round_trip() {
        let k = bigram_key('噪', '音');
        assert_eq!(bigram_str(k), "噪音");
        let mut v = Vec::new();
        bigrams("噪音扰民。a", 100, |k| v.push(bigram_str(k)));
        assert_eq!(v, vec!["噪音", "音扰", "扰民"]);
    }

    #[test]
    fn blank_out_longest_first() {
        assert_eq!(blank_out("丽发新城小区旁搅拌站", &["丽发新城", "丽发新城小区"]), " 旁搅拌站");
    }
}
