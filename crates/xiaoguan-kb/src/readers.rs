//! Document readers: markdown (LawRefBook statutes), plain text, HTML, PDF text layer, docx,
//! JSON/JSONL records and csv/xlsx tables. Each turns a file into structured documents; a file
//! that cannot be read is reported with its path and reason by the caller, which goes on.

use crate::definition::{Format, RecordMapping, SourceSpec};
use serde_json::{Map, Value};
use std::path::Path;
use xiaoguan_text::{parse_law_markdown, parse_plain, Block, Document};

/// One document ready for chunking.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    /// Stable id within the knowledge base: the relative path, plus `#record` for records.
    pub key: String,
    pub doc: Document,
    pub meta: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ReadError {
    pub path: String,
    pub reason: String,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> ReadError {
    ReadError { path: path.display().to_string(), reason: reason.to_string() }
}

fn file_stem_title(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // LawRefBook names carry the version date: 工伤保险条例(2010-12-20)
    match stem.rfind('(') {
        Some(i) if stem.ends_with(')') && stem[i + 1..stem.len() - 1].chars().all(|c| c.is_ascii_digit() || c == '-') => {
            stem[..i].to_string()
        }
        _ => stem,
    }
}

/// The version date in a LawRefBook file name, e.g. "2018-12-29".
fn file_date(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let i = stem.rfind('(')?;
    let d = stem.get(i + 1..stem.len() - 1)?;
    (stem.ends_with(')') && d.len() == 10 && d.chars().all(|c| c.is_ascii_digit() || c == '-')).then(|| d.to_string())
}

/// A document number (文号) such as 穗府办规〔2024〕13号 or 唐港城办发﹝2019﹞8号 in `text`.
pub fn find_doc_no(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().take(3000).collect();
    for (i, &c) in chars.iter().enumerate() {
        if !matches!(c, '〔' | '﹝' | '[' | '［') {
            continue;
        }
        let year: String = chars[i + 1..].iter().take(4).collect();
        if year.len() != 4 || !year.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let close = chars.get(i + 5)?;
        if !matches!(close, '〕' | '﹞' | ']' | '］') {
            continue;
        }
        let num: String = chars[i + 6..].iter().take_while(|c| c.is_ascii_digit()).collect();
        if num.is_empty() || chars.get(i + 6 + num.chars().count()) != Some(&'号') {
            continue;
        }
        let prefix: String = {
            let mut p: Vec<char> = chars[..i].iter().rev().take_while(|c| ('\u{4e00}'..='\u{9fff}').contains(*c)).take(8).copied().collect();
            p.reverse();
            p.into_iter().collect()
        };
        if prefix.is_empty() {
            continue;
        }
        return Some(format!("{prefix}〔{year}〕{num}号"));
    }
    None
}

fn detect(path: &Path, format: Format, text_head: Option<&str>) -> Format {
    if format != Format::Auto {
        return format;
    }
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "md" | "markdown" => {
            if text_head.is_some_and(|t| t.contains("<!-- INFO END -->")) {
                Format::LawMarkdown
            } else {
                Format::Text
            }
        }
        "html" | "htm" => Format::Html,
        "pdf" => Format::Pdf,
        "docx" => Format::Docx,
        "json" | "jsonl" => Format::Records,
        "csv" | "xlsx" | "xls" => Format::Table,
        _ => Format::Text,
    }
}

fn read_string(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    String::from_utf8(bytes).map_err(|e| err(path, format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// Read one file according to its source spec. `key` is the file's path relative to its base.
pub fn read_file(path: &Path, key: &str, spec: &SourceSpec) -> Result<Vec<SourceDoc>, ReadError> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let textual = matches!(ext.as_str(), "md" | "markdown" | "txt" | "html" | "htm" | "json" | "jsonl" | "csv" | "");
    let text = if textual { Some(read_string(path)?) } else { None };
    let format = detect(path, spec.format, text.as_deref());
    let title = file_stem_title(path);
    let mut base_meta = Map::new();
    base_meta.insert("doc_type".into(), spec.doc_type.clone().into());
    base_meta.insert("source_path".into(), key.into());
    if let Some(r) = &spec.region {
        base_meta.insert("region".into(), r.clone().into());
    }
    if let Some(i) = &spec.issuer {
        base_meta.insert("issuer".into(), i.clone().into());
    }
    let single = |doc: Document, meta: Map<String, Value>| Ok(vec![SourceDoc { key: key.to_string(), doc, meta }]);
    match format {
        Format::LawMarkdown => {
            let doc = parse_law_markdown(text.as_deref().unwrap_or_default());
            let mut meta = base_meta;
            if let Some(d) = file_date(path) {
                meta.insert("date".into(), d.into());
            }
            if doc.blocks.is_empty() {
                return Err(err(path, "no text after the info block"));
            }
            let doc = if doc.title.is_empty() { Document { title, ..doc } } else { doc };
            single(doc, meta)
        }
        Format::Text | Format::Html | Format::Pdf | Format::Docx => {
            let body = match format {
                Format::Html => html_text(text.as_deref().unwrap_or_default()),
                Format::Pdf => pdf_text(path)?,
                Format::Docx => docx_text(path)?,
                _ => text.unwrap_or_default(),
            };
            if body.trim().is_empty() {
                return Err(err(path, "no text (an image-only PDF or an empty file?)"));
            }
            let mut meta = base_meta;
            if let Some(no) = find_doc_no(&body).or_else(|| find_doc_no(&title)) {
                meta.insert("doc_no".into(), no.into());
            }
            single(parse_plain(&body, &title), meta)
        }
        Format::Records => {
            let mapping = spec.records.as_ref().ok_or_else(|| err(path, "records need a [sources.records] mapping"))?;
            let text = text.unwrap_or_default();
            let rows: Vec<Map<String, Value>> = if ext == "jsonl" {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(i, l)| match serde_json::from_str::<Value>(l) {
                        Ok(Value::Object(m)) => Ok(m),
                        Ok(_) => Err(err(path, format!("line {}: not a JSON object", i + 1))),
                        Err(e) => Err(err(path, format!("line {}: {e}", i + 1))),
                    })
                    .collect::<Result<_, _>>()?
            } else {
                match serde_json::from_str::<Value>(&text).map_err(|e| err(path, format!("line {}: {e}", e.line())))? {
                    Value::Array(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| match v {
                            Value::Object(m) => Ok(m),
                            _ => Err(err(path, format!("record {}: not a JSON object", i + 1))),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(err(path, "expected a JSON array of records")),
                }
            };
            records_to_docs(path, key, &rows, mapping, &base_meta)
        }
        Format::Table => {
            let rows = if ext == "csv" { csv_rows(path, text.as_deref().unwrap_or_default())? } else { xlsx_rows(path)? };
            match &spec.records {
                Some(mapping) => records_to_docs(path, key, &rows, mapping, &base_meta),
                None => Ok(rows
                    .iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let lines: Vec<String> = row.iter().filter_map(|(k, v)| value_text(v).map(|t| format!("{k}：{t}"))).collect();
                        let first = row.values().find_map(value_text).unwrap_or_default();
                        SourceDoc {
                            key: format!("{key}#{}", i + 1),
                            doc: single_block(&format!("{title} 第{}行 {}", i + 1, first), &lines.join("\n")),
                            meta: base_meta.clone(),
                        }
                    })
                    .collect()),
            }
        }
        Format::Auto => unreachable!("detect() resolves Auto"),
    }
}

fn single_block(title: &str, text: &str) -> Document {
    Document {
        title: title.to_string(),
        info: vec![],
        blocks: vec![Block { heading_path: vec![], article: None, article_no: None, text: text.to_string() }],
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(value_text).enumerate().map(|(i, t)| format!("{}. {t}", i + 1)).collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
        Value::Object(_) => Some(v.to_string()),
    }
}

fn fill(template: &str, row: &Map<String, Value>) -> String {
    if !template.contains('{') {
        return row.get(template).and_then(value_text).unwrap_or_default();
    }
    let mut out = template.to_string();
    for (k, v) in row {
        out = out.replace(&format!("{{{k}}}"), &value_text(v).unwrap_or_default());
    }
    out
}

fn records_to_docs(
    path: &Path,
    key: &str,
    rows: &[Map<String, Value>],
    m: &RecordMapping,
    base: &Map<String, Value>,
) -> Result<Vec<SourceDoc>, ReadError> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let id = m.id.as_ref().and_then(|f| row.get(f)).and_then(value_text).unwrap_or_else(|| (i + 1).to_string());
        let title = fill(&m.title, row);
        let mut parts = Vec::new();
        for tf in &m.text {
            if let Some(v) = row.get(&tf.field).and_then(value_text) {
                parts.push(if tf.label.is_empty() {
                    v
                } else if v.contains('\n') {
                    format!("{}：\n{v}", tf.label)
                } else {
                    format!("{}：{v}", tf.label)
                });
            }
        }
        if parts.is_empty() {
            return Err(err(path, format!("record {} ({id}) has none of the text fields", i + 1)));
        }
        let text = parts.join("\n");
        let doc = if m.structured { parse_plain(&text, &title) } else { single_block(&title, &text) };
        let mut meta = base.clone();
        for (name, field) in [("doc_no", &m.doc_no), ("issuer", &m.issuer), ("date", &m.date), ("url", &m.url)] {
            if let Some(v) = field.as_ref().and_then(|f| row.get(f)).and_then(value_text) {
                meta.insert(name.into(), v.into());
            }
        }
        if !meta.contains_key("doc_no") {
            if let Some(no) = find_doc_no(&text) {
                meta.insert("doc_no".into(), no.into());
            }
        }
        for k in &m.keep {
            if let Some(v) = row.get(k) {
                meta.insert(k.clone(), v.clone());
            }
        }
        out.push(SourceDoc { key: format!("{key}#{id}"), doc, meta });
    }
    Ok(out)
}

fn csv_rows(path: &Path, text: &str) -> Result<Vec<Map<String, Value>>, ReadError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(|e| err(path, e))?.iter().map(|h| h.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(path, format!("line {}: {e}", i + 2)))?;
        let row: Map<String, Value> =
            headers.iter().zip(rec.iter()).map(|(h, v)| (h.clone(), Value::String(v.to_string()))).collect();
        rows.push(row);
    }
    Ok(rows)
}

fn xlsx_rows(path: &Path) -> Result<Vec<Map<String, Value>>, ReadError> {
    use calamine::{open_workbook_auto, Data, Reader};
    let mut wb = open_workbook_auto(path).map_err(|e| err(path, e))?;
    let sheet = wb.sheet_names().first().cloned().ok_or_else(|| err(path, "no sheets"))?;
    let range = wb.worksheet_range(&sheet).map_err(|e| err(path, e))?;
    let mut iter = range.rows();
    let headers: Vec<String> = iter.next().ok_or_else(|| err(path, "empty sheet"))?.iter().map(|c| c.to_string().trim().to_string()).collect();
    let mut rows = Vec::new();
    for r in iter {
        let row: Map<String, Value> = headers
            .iter()
            .zip(r.iter())
            .filter(|(h, _)| !h.is_empty())
            .map(|(h, c)| {
                let v = match c {
                    Data::Empty => Value::Null,
                    Data::Float(f) => serde_json::json!(f),
                    Data::Int(i) => serde_json::json!(i),
                    other => Value::String(other.to_string()),
                };
                (h.clone(), v)
            })
            .collect();
        if row.values().any(|v| !v.is_null()) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Visible text of an HTML page: scripts, styles and navigation dropped, block elements on their own lines.
pub fn html_text(html: &str) -> String {
    use scraper::{Html, Node};
    let doc = Html::parse_document(html);
    let mut out = String::new();
    fn walk(node: ego_tree::NodeRef<'_, Node>, out: &mut String) {
        match node.value() {
            Node::Element(e) => {
                let name = e.name();
                if matches!(name, "script" | "style" | "nav" | "header" | "footer" | "noscript" | "iframe" | "head") {
                    return;
                }
                let block = matches!(name, "p" | "div" | "br" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "section" | "article");
                if block {
                    out.push('\n');
                }
                for c in node.children() {
                    walk(c, out);
                }
                if block {
                    out.push('\n');
                }
            }
            Node::Text(t) => out.push_str(t),
            _ => {
                for c in node.children() {
                    walk(c, out);
                }
            }
        }
    }
    walk(doc.tree.root(), &mut out);
    out
}

fn pdf_text(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    // pdf-extract panics on some malformed files: contain it to this file.
    match std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&bytes)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(err(path, format!("unreadable PDF: {e}"))),
        Err(_) => Err(err(path, "unreadable PDF (parser failure)")),
    }
}

/// Paragraph text of a .docx (word/document.xml: w:p paragraphs, w:t runs).
pub fn docx_text(path: &Path) -> Result<String, ReadError> {
    use quick_xml::events::Event;
    let f = std::fs::File::open(path).map_err(|e| err(path, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| err(path, format!("not a docx (zip): {e}")))?;
    let mut xml = String::new();
    {
        use std::io::Read;
        let mut entry = zip.by_name("word/document.xml").map_err(|_| err(path, "not a docx: no word/document.xml"))?;
        entry.read_to_string(&mut xml).map_err(|e| err(path, e))?;
    }
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = String::new();
    let mut in_text = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.name().as_ref() == b"w:t" => in_text = true,
            Ok(Event::End(e)) if e.name().as_ref() == b"w:t" => in_text = false,
            Ok(Event::End(e)) if e.name().as_ref() == b"w:p" => out.push('\n'),
            Ok(Event::Empty(e)) if e.name().as_ref() == b"w:tab" => out.push(' '),
            Ok(Event::Text(t)) if in_text => out.push_str(&t.decode().map_err(|e| err(path, e))?),
            Ok(Event::Eof) => break,
            Err(e) => return Err(err(path, format!("bad document.xml at byte {}: {e}", reader.buffer_position()))),
            _ => {}
        }
    }
    Ok(out)
}
