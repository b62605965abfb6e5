//! Payload filters as users write them (CLI flags, HTTP bodies): exact values, and ranges whose
//! kind — numbers or dates — comes from the field's index, not from how the value looks.

use crate::kb::DATETIME_FIELDS;
use crate::KbError;
use serde_json::Value;
use xiaoguan_store::Condition;

fn bad(msg: String) -> KbError {
    KbError::InvalidQuery(msg)
}

/// "2018-12-29" (optionally followed by a time, RFC 3339 style).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
        && (1..=12).contains(&s[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u32>().unwrap_or(0))
}

/// `gte <= field <= lte`; a bound may be absent (or JSON null), not both.
pub fn range_condition(field: &str, gte: Option<&Value>, lte: Option<&Value>) -> Result<Condition, KbError> {
    let (gte, lte) = (gte.filter(|v| !v.is_null()), lte.filter(|v| !v.is_null()));
    if gte.is_none() && lte.is_none() {
        return Err(bad(format!("filter '{field}': a range needs gte or lte")));
    }
    if DATETIME_FIELDS.contains(&field) {
        let date = |v: Option<&Value>| -> Result<Option<String>, KbError> {
            match v {
                None => Ok(None),
                Some(Value::String(s)) if is_date(s.trim()) => Ok(Some(s.trim().to_string())),
                Some(other) => Err(bad(format!("filter '{field}': {other} is not a date (YYYY-MM-DD)"))),
            }
        };
        let (gte, lte) = (date(gte)?, date(lte)?);
        if let (Some(a), Some(b)) = (&gte, &lte) {
            if a > b {
                return Err(bad(format!("filter '{field}': {a} is after {b}")));
            }
        }
        return Ok(Condition::DateRange { field: field.to_string(), gte, lte });
    }
    let number = |v: Option<&Value>| -> Result<Option<f64>, KbError> {
        let n = match v {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(bad(format!("filter '{field}': {} is not a number", v.map(Value::to_string).unwrap_or_default()))),
        }
    };
    let (gte, lte) = (number(gte)?, number(lte)?);
    if let (Some(a), Some(b)) = (gte, lte) {
        if a > b {
            return Err(bad(format!("filter '{field}': {a} is above {b}")));
        }
    }
    Ok(Condition::Range { field: field.to_string(), gte, lte })
}

/// One CLI filter: `FIELD=VALUE` (exact; integers compare as numbers), `FIELD>=VALUE` or
/// `FIELD<=VALUE`.
pub fn parse_filter(item: &str) -> Result<Condition, KbError> {
    let malformed = || bad(format!("filter '{item}' is not FIELD=VALUE, FIELD>=VALUE or FIELD<=VALUE"));
    let at = item.find(['<', '>', '=']).ok_or_else(malformed)?;
    let (field, rest) = (item[..at].trim(), &item[at..]);
    let (op, value) = match rest.as_bytes() {
        [b'<', b'=', ..] => ("<=", &rest[2..]),
        [b'>', b'=', ..] => (">=", &rest[2..]),
        [b'=', ..] => ("=", &rest[1..]),
        _ => return Err(malformed()),
    };
    let value = value.trim();
    if field.is_empty() || value.is_empty() {
        return Err(malformed());
    }
    let v = Value::String(value.to_string());
    match op {
        "<=" => range_condition(field, None, Some(&v)),
        ">=" => range_condition(field, Some(&v), None),
        _ => Ok(Condition::Eq {
            field: field.to_string(),
            value: value.parse::<i64>().map(Value::from).unwrap_or(v),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_field_decides_between_numbers_and_dates() {
        assert_eq!(parse_filter("doc_type=law").unwrap(), Condition::Eq { field: "doc_type".into(), value: "law".into() });
        assert_eq!(parse_filter("article_no=16").unwrap(), Condition::Eq { field: "article_no".into(), value: 16.into() });
        assert_eq!(parse_filter("article_no>=10").unwrap(), Condition::Range { field: "article_no".into(), gte: Some(10.0), lte: None });
        assert_eq!(parse_filter("date<=2015-06-30").unwrap(), Condition::DateRange { field: "date".into(), gte: None, lte: Some("2015-06-30".into()) });
        // The first operator splits: a value may hold '<'.
        assert_eq!(parse_filter("doc_no=A<=B").unwrap(), Condition::Eq { field: "doc_no".into(), value: "A<=B".into() });
        for bad in ["doc_type", "=law", "date<=", "date<2015-01-01", "date>=2015", "article_no<=NaN", "article_no>=inf", "date<=2015-13-01"] {
            let e = parse_filter(bad).unwrap_err().to_string();
            assert!(e.contains("filter"), "{bad}: {e}");
        }
        assert!(range_condition("date", Some(&json!("2020-01-01")), Some(&json!("2019-01-01"))).is_err());
        assert!(range_condition("ordinal", Some(&json!(5)), Some(&json!(1))).is_err());
        assert!(range_condition("ordinal", Some(&json!(null)), None).is_err());
        assert_eq!(range_condition("ordinal", Some(&json!(1)), Some(&json!(null))).unwrap(), Condition::Range { field: "ordinal".into(), gte: Some(1.0), lte: None });
    }
}
