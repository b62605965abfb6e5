//! Times: tickets carry unix milliseconds (local civil time read as UTC: 12345 data has no
//! zone, and weeks only need the calendar). Parsing accepts "2019/2/28 11:25:05",
//! "2019-08-28 09:30:20", "2019/2/28", RFC 3339, and unix seconds or milliseconds.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

pub const DAY_MS: i64 = 86_400_000;

pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        // Seconds up to year ~5000; above that milliseconds.
        return Some(if n < 100_000_000_000 { n * 1000 } else { n });
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.naive_local().and_utc().timestamp_millis());
    }
    let t = s.replace('/', "-").replace('T', " ");
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(&t, f) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

fn date(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms).map(|d| d.date_naive()).unwrap_or_default()
}

/// ISO week as "2019-W09".
pub fn iso_week(ms: i64) -> String {
    let w = date(ms).iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

/// A sortable ISO week number: year * 100 + week.
pub fn iso_week_num(ms: i64) -> u32 {
    let w = date(ms).iso_week();
    (w.year() as u32) * 100 + w.week()
}

/// The Monday that starts the ISO week of `ms`, as unix ms.
pub fn week_start(ms: i64) -> i64 {
    let d = date(ms);
    let monday = d - chrono::Duration::days(d.weekday().num_days_from_monday() as i64);
    monday.and_hms_opt(0, 0, 0).map(|x| x.and_utc().timestamp_millis()).unwrap_or(ms)
}

/// "2019-02-28 11:25".
pub fn format_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

pub fn format_date(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_of_the_data() {
        let a = parse_time("2019/2/28 11:25:05").unwrap();
        let b = parse_time("2019-02-28 11:25:05").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_time(a), "2019-02-28 11:25");
        assert_eq!(parse_time("2019/2/28").unwrap(), parse_time("2019-02-28 00:00:00").unwrap());
        assert_eq!(parse_time("1551353105").unwrap(), 1_551_353_105_000);
        assert_eq!(parse_time("1551353105000").unwrap(), 1_551_353_105_000);
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2019-02-28T11:25:05+08:00").is_some());
    }

    #[test]
    fn iso_weeks() {
        // 2019-12-30 is in ISO week 2020-W01; 2019-02-28 is a Thursday of W09.
        assert_eq!(iso_week(parse_time("2019-12-30").unwrap()), "2020-W01");
        assert_eq!(iso_week(parse_time("2019/2/28 11:25:05").unwrap()), "2019-W09");
        assert_eq!(format_date(week_start(parse_time("2019/2/28 11:25:05").unwrap())), "2019-02-25");
        assert_eq!(iso_week_num(parse_time("2019-12-30").unwrap()), 202001);
    }
}
