//! JSONL loading with a field mapping. The defaults fit the tipdm 2020 智慧政务 files
//! (`hot_messages.jsonl`: id, user, title, time, text, likes, dislikes;
//! `messages_with_official_replies.jsonl` adds reply and reply_time, read as closed).
//! A bad line is an error that names the file and the line.

use crate::time::parse_time;
use crate::{Error, Ticket};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// Which JSON field holds what. An empty name means "not in this file".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FieldMap {
    pub id: String,
    pub time: String,
    pub title: String,
    pub text: String,
    pub reporter: String,
    pub likes: String,
    pub dislikes: String,
    /// A reply here (non-empty) marks the ticket closed.
    pub reply: String,
    /// When it was closed / answered.
    pub closed_at: String,
    /// A boolean closed flag.
    pub closed: String,
    pub place: String,
    pub town: String,
    pub domain: String,
    pub category: String,
    pub unit: String,
    pub suggested_unit: String,
    pub unit_changed: String,
    pub embedding: String,
}

impl Default for FieldMap {
    fn default() -> Self {
        let s = |x: &str| x.to_string();
        Self {
            id: s("id"),
            time: s("time"),
            title: s("title"),
            text: s("text"),
            reporter: s("user"),
            likes: s("likes"),
            dislikes: s("dislikes"),
            reply: s("reply"),
            closed_at: s("reply_time"),
            closed: s("closed"),
            place: s("place"),
            town: s("town"),
            domain: s("domain"),
            category: s("category"),
            unit: s("unit"),
            suggested_unit: s("suggested_unit"),
            unit_changed: s("unit_changed"),
            embedding: s("embedding"),
        }
    }
}

impl FieldMap {
    /// Override fields from "key=field" pairs (e.g. "reporter=phone_hash").
    pub fn with_overrides(mut self, pairs: &[String]) -> Result<Self, String> {
        for p in pairs {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("field mapping '{p}': expected key=field"))?;
            let slot = match k.trim() {
                "id" => &mut self.id,
                "time" => &mut self.time,
                "title" => &mut self.title,
                "text" => &mut self.text,
                "reporter" | "user" => &mut self.reporter,
                "likes" => &mut self.likes,
                "dislikes" => &mut self.dislikes,
                "reply" => &mut self.reply,
                "closed_at" | "reply_time" => &mut self.closed_at,
                "closed" => &mut self.closed,
                "place" => &mut self.place,
                "town" => &mut self.town,
                "domain" => &mut self.domain,
                "category" => &mut self.category,
                "unit" => &mut self.unit,
                "suggested_unit" => &mut self.suggested_unit,
                "unit_changed" => &mut self.unit_changed,
                "embedding" => &mut self.embedding,
                other => return Err(format!("field mapping '{p}': no ticket field '{other}'")),
            };
            *slot = v.trim().to_string();
        }
        Ok(self)
    }
}

fn get<'a>(o: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a Value> {
    if field.is_empty() {
        return None;
    }
    o.get(field).filter(|v| !v.is_null())
}

fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One JSON object → a ticket. Err is the message (the caller adds file and line).
pub fn ticket_from_json(o: &serde_json::Map<String, Value>, map: &FieldMap) -> Result<Ticket, String> {
    let id = string(get(o, &map.id)).ok_or_else(|| format!("no id (field '{}')", map.id))?;
    let time_v = get(o, &map.time).ok_or_else(|| format!("no time (field '{}')", map.time))?;
    let time_ms = match time_v {
        Value::Number(n) => n.as_i64().and_then(|n| parse_time(&n.to_string())),
        Value::String(s) => parse_time(s),
        _ => None,
    }
    .ok_or_else(|| format!("time {time_v} is not a date (field '{}')", map.time))?;
    let title = string(get(o, &map.title)).unwrap_or_default();
    let text = string(get(o, &map.text)).unwrap_or_default();
    if title.is_empty() && text.is_empty() {
        return Err(format!("no title nor text (fields '{}', '{}')", map.title, map.text));
    }
    let count = |field: &str| -> Result<Option<u32>, String> {
        match get(o, field) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(|n| Some(n.min(u32::MAX as u64) as u32)).ok_or_else(|| format!("{field} {n} is not a count")),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse::<u32>().map(Some).map_err(|_| format!("{field} '{s}' is not a count")),
            Some(v) => Err(format!("{field} {v} is not a count")),
        }
    };
    let flag = |field: &str| -> Result<Option<bool>, String> {
        match get(o, field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64().unwrap_or(0.0) != 0.0)),
            Some(Value::String(s)) => match s.trim() {
                "true" | "1" | "yes" | "是" => Ok(Some(true)),
                "false" | "0" | "no" | "否" | "" => Ok(Some(false)),
                _ => Err(format!("{field} '{s}' is not true/false")),
            },
            Some(v) => Err(format!("{field} {v} is not true/false")),
        }
    };
    let closed_at_ms = match string(get(o, &map.closed_at)) {
        Some(s) => Some(parse_time(&s).ok_or_else(|| format!("{} '{s}' is not a date", map.closed_at))?),
        None => None,
    };
    let replied = string(get(o, &map.reply)).is_some();
    let closed = flag(&map.closed)?.unwrap_or(false) || replied || closed_at_ms.is_some();
    let embedding = match get(o, &map.embedding) {
        None => None,
        Some(Value::Array(a)) => Some(a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect::<Option<Vec<f32>>>().ok_or_else(|| format!("{} holds a non-number", map.embedding))?),
        Some(v) => return Err(format!("{} {v} is not an array of numbers", map.embedding)),
    };
    let unit = string(get(o, &map.unit));
    let suggested_unit = string(get(o, &map.suggested_unit));
    let unit_changed = match flag(&map.unit_changed)? {
        Some(b) => b,
        None => matches!((&unit, &suggested_unit), (Some(u), Some(s)) if u != s),
    };
    Ok(Ticket {
        id,
        time_ms,
        title,
        text,
        reporter: string(get(o, &map.reporter)),
        place: string(get(o, &map.place)),
        town: string(get(o, &map.town)),
        domain: string(get(o, &map.domain)),
        category: string(get(o, &map.category)),
        unit,
        suggested_unit,
        unit_changed,
        closed,
        closed_at_ms,
        likes: count(&map.likes)?,
        dislikes: count(&map.dislikes)?,
        embedding,
    })
}

/// Read a JSONL file (blank lines skipped). The first bad line is an error naming it.
pub fn load_jsonl(path: &Path, map: &FieldMap) -> Result<Vec<Ticket>, Error> {
    let p = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| Error::Io { path: p.clone(), source: e })?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Input { path: p.clone(), line: n + 1, msg: e.to_string() })?;
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|e| Error::Input { path: p.clone(), line: n + 1, msg: format!("not JSON: {e}") })?;
        let o = v.as_object().ok_or_else(|| Error::Input { path: p.clone(), line: n + 1, msg: "not a JSON object".into() })?;
        out.push(ticket_from_json(o, map).map_err(|msg| Error::Input { path: p.clone(), line: n + 1, msg })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_the_tipdm_shapes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"id": 188006, "user": "A000102948", "title": "A3区一米阳光", "time": "2019/2/28 11:25:05", "text": "座落在A市A3区", "likes": 2, "dislikes": 0}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"id": 2549, "user": "A00045581", "title": "景蓉华苑物业", "time": "2019-04-25 09:32:09", "text": "物业", "reply": "现将调查情况答复如下", "reply_time": "2019/5/10 14:56:53"}}"#).unwrap();
        let ts = load_jsonl(f.path(), &FieldMap::default()).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[0].id, "188006");
        assert_eq!(ts[0].likes, Some(2));
        assert_eq!(ts[0].reporter.as_deref(), Some("A000102948"));
        assert!(!ts[0].closed);
        assert!(ts[1].closed);
        assert_eq!(ts[1].closed_at_ms, parse_time("2019-05-10 14:56:53"));
    }

    #[test]
    fn bad_lines_are_named() {
        for (body, want) in [
            ("{\"id\":1,\"time\":\"2019/2/28\",\"text\":\"a\"}\n{oops\n", ":2: not JSON"),
            ("{\"id\":1,\"time\":\"someday\",\"text\":\"a\"}\n", ":1: time \"someday\" is not a date"),
            ("{\"id\":1,\"time\":\"2019/2/28\"}\n", ":1: no title nor text"),
            ("{\"time\":\"2019/2/28\",\"text\":\"a\"}\n", ":1: no id"),
            ("{\"id\":1,\"time\":\"2019/2/28\",\"text\":\"a\",\"likes\":\"many\"}\n", ":1: likes 'many' is not a count"),
            ("[1,2]\n", ":1: not a JSON object"),
        ] {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(body.as_bytes()).unwrap();
            let e = load_jsonl(f.path(), &FieldMap::default()).unwrap_err().to_string();
            assert!(e.contains(&f.path().display().to_string()) && e.contains(want), "{e} (want {want})");
        }
        let e = load_jsonl(Path::new("/no/such/file.jsonl"), &FieldMap::default()).unwrap_err().to_string();
        assert!(e.starts_with("/no/such/file.jsonl: "), "{e}");
    }

    #[test]
    fn mapping_overrides() {
        let m = FieldMap::default().with_overrides(&["reporter=phone_hash".into(), "text = content".into()]).unwrap();
        assert_eq!(m.reporter, "phone_hash");
        assert_eq!(m.text, "content");
        assert!(FieldMap::default().with_overrides(&["nope=x".into()]).is_err());
        assert!(FieldMap::default().with_overrides(&["id".into()]).is_err());
        let o: serde_json::Map<String, Value> = serde_json::from_str(r#"{"id":"a","time":1551353105,"content":"噪音","phone_hash":"r-1","unit":"A","suggested_unit":"B","embedding":[0.5,1]}"#).unwrap();
        let t = ticket_from_json(&o, &m).unwrap();
        assert_eq!(t.text, "噪音");
        assert_eq!(t.reporter.as_deref(), Some("r-1"));
        assert!(t.unit_changed);
        assert_eq!(t.embedding, Some(vec![0.5, 1.0]));
        assert_eq!(t.time_ms, 1_551_353_105_000);
    }
}
