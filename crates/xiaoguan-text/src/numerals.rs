//! Chinese numerals as used in article numbers (第一百二十三条) and headings (第十六章, 二十一、).

fn digit(c: char) -> Option<u32> {
    Some(match c {
        '零' | '〇' => 0,
        '一' | '壹' => 1,
        '二' | '两' | '贰' => 2,
        '三' | '叁' => 3,
        '四' | '肆' => 4,
        '五' | '伍' => 5,
        '六' | '陆' => 6,
        '七' | '柒' => 7,
        '八' | '捌' => 8,
        '九' | '玖' => 9,
        _ => return None,
    })
}

/// Parse a Chinese (一百二十三, 十六, 二〇二四) or Arabic numeral; None if it is neither.
pub fn parse(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    // Digit-by-digit form (二〇二四) has no unit characters.
    if s.chars().all(|c| digit(c).is_some()) && s.chars().count() > 1 {
        return s.chars().try_fold(0u32, |acc, c| acc.checked_mul(10)?.checked_add(digit(c)?));
    }
    let (mut total, mut section, mut current) = (0u32, 0u32, 0u32);
    let mut seen = false;
    for c in s.chars() {
        if let Some(d) = digit(c) {
            current = d;
            seen = true;
            continue;
        }
        let unit = match c {
            '十' | '拾' => 10,
            '百' | '佰' => 100,
            '千' | '仟' => 1000,
            '万' => 10_000,
            _ => return None,
        };
        seen = true;
        // Checked: a user's question may hold any run of numerals; too large is "not a number".
        if unit == 10_000 {
            total = total.checked_add(section.checked_add(current)?.checked_mul(unit)?)?;
            section = 0;
        } else {
            // "十六" means 1×10 + 6.
            section = section.checked_add(if current == 0 { 1 } else { current }.checked_mul(unit)?)?;
        }
        current = 0;
    }
    if !seen {
        return None;
    }
    total.checked_add(section)?.checked_add(current)
}

/// Chinese numeral for `n` (1..=9999) in the form used by statutes: 16 → 十六, 105 → 一百零五.
pub fn to_chinese(n: u32) -> String {
    const D: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    if n == 0 {
        return "零".into();
    }
    if n < 10 {
        return D[n as usize].into();
    }
    if n < 20 {
        return format!("十{}", if n % 10 == 0 { "" } else { D[(n % 10) as usize] });
    }
    let mut out = String::new();
    let units = [(1000, "千"), (100, "百"), (10, "十")];
    let mut rest = n;
    let mut zero_pending = false;
    for (value, name) in units {
        let d = rest / value;
        rest %= value;
        if d > 0 {
            if zero_pending {
                out.push('零');
                zero_pending = false;
            }
            out.push_str(D[d as usize]);
            out.push_str(name);
        } else if !out.is_empty() {
            zero_pending = true;
        }
    }
    if rest > 0 {
        if zero_pending {
            out.push('零');
        }
        out.push_str(D[rest as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statute_numbers() {
        for (s, n) in [("一", 1), ("十", 10), ("十六", 16), ("二十", 20), ("一百零五", 105), ("一百二十三", 123), ("两千零一", 2001), ("二〇二四", 2024), ("16", 16)] {
            assert_eq!(parse(s), Some(n), "{s}");
        }
        assert_eq!(parse("条"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn round_trips() {
        for n in 1..=1200 {
            assert_eq!(parse(&to_chinese(n)), Some(n), "{n} {}", to_chinese(n));
        }
        assert_eq!(to_chinese(16), "十六");
        assert_eq!(to_chinese(105), "一百零五");
        assert_eq!(to_chinese(110), "一百一十");
    }

    #[test]
    fn numerals_too_large_are_not_numbers() {
        assert_eq!(parse(&"九千九百九十九万".repeat(50)), None);
        assert_eq!(parse("九千九百九十九万九千九百九十九"), Some(99_999_999));
    }
}
