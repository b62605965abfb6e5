//! Document readers: markdown (LawRefBook statutes), plain text, HTML, PDF text layer, docx,
//! JSON/JSONL records and csv/xlsx tables. Each turns a file into structured documents; a file
//! that cannot be read is reported with its path and reason by the caller, which goes on.
//!
//! Every reader works within [`ReaderLimits`] (file size, bytes after decompression and the
//! compression ratio of zip containers and PDF streams, PDF pages and objects, characters per
//! document and per line, rows per sheet, JSON/HTML nesting, a wall-clock budget), checked
//! before the work they bound; a file over a limit is a [`ReadError`] naming the limit.

use crate::definition::{Format, RecordMapping, SourceSpec};
use crate::limits::{self, over, Deadline, ReaderLimits};
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

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        err(path, format!("not UTF-8 text (byte {}; GBK or another legacy encoding? save it as UTF-8)", e.utf8_error().valid_up_to()))
    })
}

/// Read one file according to its source spec, within the default [`ReaderLimits`]. `key` is
/// the file's path relative to its base.
pub fn read_file(path: &Path, key: &str, spec: &SourceSpec) -> Result<Vec<SourceDoc>, ReadError> {
    read_file_with(path, key, spec, &ReaderLimits::default())
}

/// [`read_file`] within `limits`. A reader that panics on a malformed file (a parser bug) is
/// contained: the file is refused as unreadable and the caller goes on.
pub fn read_file_with(path: &Path, key: &str, spec: &SourceSpec, limits: &ReaderLimits) -> Result<Vec<SourceDoc>, ReadError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_within(path, key, spec, limits))) {
        Ok(r) => r,
        Err(p) => {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(err(path, format!("unreadable (the reader failed: {})", what.chars().take(200).collect::<String>())))
        }
    }
}

fn read_within(path: &Path, key: &str, spec: &SourceSpec, limits: &ReaderLimits) -> Result<Vec<SourceDoc>, ReadError> {
    let deadline = Deadline::new(limits);
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let textual = matches!(ext.as_str(), "md" | "markdown" | "txt" | "html" | "htm" | "json" | "jsonl" | "csv" | "");
    let bytes = limits::read_bounded(path, limits).map_err(|e| err(path, e))?;
    if bytes.is_empty() {
        return Err(err(path, "empty file (0 bytes)"));
    }
    let (text, bytes) = if textual { (Some(utf8(path, bytes)?), Vec::new()) } else { (None, bytes) };
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
            let text = text.as_deref().unwrap_or_default();
            limits::check_text(text, limits, "the text").map_err(|e| err(path, e))?;
            let doc = parse_law_markdown(text);
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
                Format::Html => {
                    let html = text.as_deref().unwrap_or_default();
                    if let Some(d) = limits::html_depth_over(html, limits.max_html_depth) {
                        return Err(err(path, over(format!("HTML nests elements deeper than {}", d - 1), "max_html_depth", limits.max_html_depth)));
                    }
                    html_text(html)
                }
                Format::Pdf => pdf_text_within(path, &bytes, limits, deadline)?,
                Format::Docx => docx_text_within(path, &bytes, limits, deadline)?,
                _ => text.unwrap_or_default(),
            };
            limits::check_text(&body, limits, "the text").map_err(|e| err(path, e))?;
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
            if let Some(d) = limits::json_depth_over(&text, limits.max_json_depth) {
                return Err(err(path, over(format!("JSON nests deeper than {}", d - 1), "max_json_depth", limits.max_json_depth)));
            }
            if ext == "jsonl" {
                let n = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
                if n > limits.max_rows {
                    return Err(err(path, over(format!("{n} records"), "max_rows", limits.max_rows)));
                }
            }
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
                    Value::Array(items) if items.len() as u64 > limits.max_rows => {
                        return Err(err(path, over(format!("{} records", items.len()), "max_rows", limits.max_rows)))
                    }
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
            deadline.check("parsing JSON").map_err(|e| err(path, e))?;
            records_to_docs(path, key, &rows, mapping, &base_meta).and_then(|docs| check_docs(path, docs, limits))
        }
        Format::Table => {
            let rows = match ext.as_str() {
                "csv" => csv_rows(path, text.as_deref().unwrap_or_default(), limits, deadline)?,
                "xls" => {
                    return Err(err(
                        path,
                        "the old binary .xls format is not read (its sheet sizes cannot be bounded before it is parsed); save it as .xlsx or .csv",
                    ))
                }
                _ => xlsx_rows_within(path, &bytes, limits, deadline)?,
            };
            deadline.check("reading the table").map_err(|e| err(path, e))?;
            match &spec.records {
                Some(mapping) => records_to_docs(path, key, &rows, mapping, &base_meta).and_then(|docs| check_docs(path, docs, limits)),
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

/// Each record's document within `max_chars`.
fn check_docs(path: &Path, docs: Vec<SourceDoc>, limits: &ReaderLimits) -> Result<Vec<SourceDoc>, ReadError> {
    for d in &docs {
        let chars: u64 = d.doc.blocks.iter().map(|b| b.text.chars().count() as u64).sum();
        if chars > limits.max_chars {
            return Err(err(path, over(format!("{} has {chars} characters", d.key), "max_chars", limits.max_chars)));
        }
    }
    Ok(docs)
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

/// `template` filled from one array element: `{field}`, or `{field|text}` with `text` standing in
/// for an empty or null field; `true`/`false` fields are written as the name only when true
/// (`{lead?★}` writes ★ when `lead` is true).
fn fill_each(template: &str, item: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        let spec = &rest[open + 1..open + close];
        let (field, fallback, flag) = match (spec.split_once('|'), spec.split_once('?')) {
            (Some((f, d)), _) => (f, d, None),
            (None, Some((f, mark))) => (f, "", Some(mark)),
            (None, None) => (spec, "", None),
        };
        let value = item.get(field);
        match flag {
            Some(mark) => {
                if value.and_then(Value::as_bool) == Some(true) {
                    out.push_str(mark);
                }
            }
            None => out.push_str(&value.and_then(value_text).unwrap_or_else(|| fallback.to_string())),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
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
            let value = match (&tf.each, row.get(&tf.field)) {
                (Some(each), Some(Value::Array(items))) => {
                    let lines: Vec<String> = items
                        .iter()
                        .filter_map(Value::as_object)
                        .enumerate()
                        .map(|(i, item)| format!("{}. {}", i + 1, fill_each(each, item)))
                        .collect();
                    (!lines.is_empty()).then(|| lines.join("\n"))
                }
                (_, v) => v.and_then(value_text),
            };
            if let Some(v) = value {
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

fn csv_rows(path: &Path, text: &str, limits: &ReaderLimits, deadline: Deadline) -> Result<Vec<Map<String, Value>>, ReadError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(|e| err(path, e))?.iter().map(|h| h.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(path, format!("line {}: {e}", i + 2)))?;
        if i as u64 >= limits.max_rows {
            return Err(err(path, over(format!("the sheet has more than {} rows", limits.max_rows), "max_rows", limits.max_rows)));
        }
        if i % 4096 == 4095 {
            deadline.check("reading csv rows").map_err(|e| err(path, e))?;
        }
        let row: Map<String, Value> =
            headers.iter().zip(rec.iter()).map(|(h, v)| (h.clone(), Value::String(v.to_string()))).collect();
        rows.push(row);
    }
    Ok(rows)
}

/// Rows of the first sheet of an xlsx, the first row giving the column names. The container
/// is checked and every entry inflated once through a bounded reader before calamine sees
/// it, and cells are streamed (calamine's `worksheet_range` allocates rows × columns of its
/// bounding box, so two cells at A1 and XFD1048576 asked for ≈ 500 GiB).
fn xlsx_rows_within(path: &Path, bytes: &[u8], limits: &ReaderLimits, deadline: Deadline) -> Result<Vec<Map<String, Value>>, ReadError> {
    use calamine::{Data, Reader, Xlsx};
    use std::collections::BTreeMap;
    let mut guard = limits::ZipGuard::open(bytes, limits, deadline, "xlsx").map_err(|e| err(path, e))?;
    guard.verify_all().map_err(|e| err(path, e))?;
    drop(guard);
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).map_err(|e| err(path, format!("not an xlsx: {e}")))?;
    let sheet = wb.sheet_names().first().cloned().ok_or_else(|| err(path, "no sheets"))?;
    let mut cells = wb.worksheet_cells_reader(&sheet).map_err(|e| err(path, e))?;
    // Sparse: row → (column, value), only the cells the sheet holds.
    let mut grid: BTreeMap<u32, Vec<(u32, Data)>> = BTreeMap::new();
    let mut n = 0u64;
    while let Some(cell) = cells.next_cell().map_err(|e| err(path, e))? {
        n += 1;
        if n % 4096 == 0 {
            deadline.check("reading xlsx cells").map_err(|e| err(path, e))?;
        }
        let value = Data::from(cell.get_value().clone());
        if matches!(value, Data::Empty) {
            continue;
        }
        let (r, c) = cell.get_position();
        if !grid.contains_key(&r) && grid.len() as u64 > limits.max_rows {
            return Err(err(path, over(format!("sheet {sheet} has more than {} rows", limits.max_rows), "max_rows", limits.max_rows)));
        }
        grid.entry(r).or_default().push((c, value));
    }
    let mut iter = grid.into_values();
    let header_row = iter.next().ok_or_else(|| err(path, "empty sheet"))?;
    let mut headers: BTreeMap<u32, String> = BTreeMap::new();
    for (c, v) in header_row {
        let h = v.to_string().trim().to_string();
        if !h.is_empty() {
            headers.insert(c, h);
        }
    }
    let mut rows = Vec::new();
    for cells in iter {
        let by_col: BTreeMap<u32, Data> = cells.into_iter().collect();
        let row: Map<String, Value> = headers
            .iter()
            .map(|(c, h)| {
                let v = match by_col.get(c) {
                    None | Some(Data::Empty) => Value::Null,
                    Some(Data::Float(f)) => serde_json::json!(f),
                    Some(Data::Int(i)) => serde_json::json!(i),
                    Some(other) => Value::String(other.to_string()),
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
/// The tree is walked with a stack of its own, so no nesting depth can overflow the thread's.
pub fn html_text(html: &str) -> String {
    use scraper::{Html, Node};
    let doc = Html::parse_document(html);
    let mut out = String::new();
    // (node, entered): a block element's closing newline is written when it is left.
    let mut stack = vec![(doc.tree.root(), false)];
    while let Some((node, left)) = stack.pop() {
        if left {
            out.push('\n');
            continue;
        }
        match node.value() {
            Node::Element(e) => {
                let name = e.name();
                if matches!(name, "script" | "style" | "nav" | "header" | "footer" | "noscript" | "iframe" | "head") {
                    continue;
                }
                let block = matches!(name, "p" | "div" | "br" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "section" | "article");
                if block {
                    out.push('\n');
                    stack.push((node, true));
                }
                stack.extend(node.children().rev().map(|c| (c, false)));
            }
            Node::Text(t) => out.push_str(t),
            _ => stack.extend(node.children().rev().map(|c| (c, false))),
        }
    }
    out
}

/// Text of a PDF's text layer (pdf-extract over lopdf), within the limits: the declared
/// object count and the page objects counted in the raw bytes, then every compressed stream
/// inflated once through a bounded reader, all before the parser sees the file; then the
/// parsed object and page counts, the decrypted streams, and the characters and time while
/// the text is extracted.
fn pdf_text_within(path: &Path, bytes: &[u8], limits: &ReaderLimits, deadline: Deadline) -> Result<String, ReadError> {
    let e = |r: String| err(path, r);
    if !bytes.starts_with(b"%PDF") && !bytes.get(..1024).is_some_and(|h| h.windows(4).any(|w| w == b"%PDF")) {
        return Err(e("not a PDF (no %PDF header)".into()));
    }
    if let Some(n) = limits::pdf_declared_objects(bytes) {
        if n > limits.max_pdf_objects {
            return Err(e(over(format!("the PDF declares {n} objects"), "max_pdf_objects", limits.max_pdf_objects)));
        }
    }
    let pages = limits::pdf_page_objects(bytes);
    if pages > limits.max_pdf_pages {
        return Err(e(over(format!("the PDF has {pages} page objects"), "max_pdf_pages", limits.max_pdf_pages)));
    }
    if let Some(d) = limits::pdf_nesting_over(bytes, limits.max_pdf_nesting, true) {
        return Err(e(over(format!("PDF objects nest deeper than {}", d - 1), "max_pdf_nesting", limits.max_pdf_nesting)));
    }
    limits::check_pdf_streams(bytes, limits, deadline).map_err(e)?;
    let doc = pdf_extract::Document::load_mem(bytes).map_err(|x| err(path, format!("unreadable PDF: {x}")))?;
    if doc.objects.len() as u64 > limits.max_pdf_objects {
        return Err(e(over(format!("the PDF has {} objects", doc.objects.len()), "max_pdf_objects", limits.max_pdf_objects)));
    }
    let pages = doc.get_pages().len() as u64;
    if pages > limits.max_pdf_pages {
        return Err(e(over(format!("the PDF has {pages} pages"), "max_pdf_pages", limits.max_pdf_pages)));
    }
    // Streams as the extractor will see them (decrypted, and those that came out of object
    // streams): their bytes after decompression, and the nesting in page contents and forms.
    let mut contents = std::collections::HashSet::new();
    for &page in doc.get_pages().values() {
        match doc.get_dictionary(page).ok().and_then(|d| d.get(b"Contents").ok()) {
            Some(pdf_extract::Object::Reference(id)) => {
                contents.insert(*id);
            }
            Some(pdf_extract::Object::Array(items)) => contents.extend(items.iter().filter_map(|o| o.as_reference().ok())),
            _ => {}
        }
    }
    let mut total = 0u64;
    for (id, obj) in &doc.objects {
        if let pdf_extract::Object::Stream(st) = obj {
            total += limits::inflated_size(&st.content, limits, total, 0).map_err(e)?;
            let form = st.dict.get(b"Subtype").and_then(|s| s.as_name()).is_ok_and(|n| n == b"Form");
            if form || contents.contains(id) {
                let data = if st.dict.has(b"Filter") { st.decompressed_content().unwrap_or_default() } else { st.content.clone() };
                if let Some(d) = limits::pdf_nesting_over(&data, limits.max_pdf_nesting, false) {
                    return Err(e(over(format!("a PDF content stream nests deeper than {}", d - 1), "max_pdf_nesting", limits.max_pdf_nesting)));
                }
            }
        }
    }
    if pdf_form_cycle(&doc) {
        return Err(e("PDF form XObjects draw themselves (a cycle of Do operators), which is not read".into()));
    }
    deadline.check("loading the PDF").map_err(e)?;
    let mut text = String::new();
    let result = {
        let mut out = BoundedPdfText { inner: pdf_extract::PlainTextOutput::new(&mut text), chars: 0, limits, deadline, refused: None };
        let r = pdf_extract::output_doc(&doc, &mut out);
        r.map_err(|x| out.refused.take().unwrap_or_else(|| format!("unreadable PDF: {x}")))
    };
    result.map_err(e)?;
    Ok(text)
}

/// Whether form XObjects can invoke themselves, or nest more than 32 deep: pdf-extract follows
/// `Do` recursively with no guard, so a form drawing itself overflowed the stack. A form that
/// draws (`Do`) without resources of its own uses its caller's and is refused too.
fn pdf_form_cycle(doc: &pdf_extract::Document) -> bool {
    use pdf_extract::{Dictionary, Object, ObjectId};
    use std::collections::HashMap;
    let dict_at = |o: &Object| -> Option<Dictionary> {
        match o {
            Object::Reference(id) => doc.get_dictionary(*id).ok().cloned(),
            Object::Dictionary(d) => Some(d.clone()),
            _ => None,
        }
    };
    let forms: Vec<(ObjectId, &pdf_extract::Stream)> = doc
        .objects
        .iter()
        .filter_map(|(id, o)| match o {
            Object::Stream(st) if st.dict.get(b"Subtype").and_then(|s| s.as_name()).is_ok_and(|n| n == b"Form") => Some((*id, st)),
            _ => None,
        })
        .collect();
    let mut edges: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for (id, st) in &forms {
        let data = if st.dict.has(b"Filter") { st.decompressed_content().unwrap_or_default() } else { st.content.clone() };
        if !data.windows(2).any(|w| w == b"Do") {
            continue;
        }
        let own = st.dict.get(b"Resources").ok().and_then(dict_at).map(|res| {
            res.get(b"XObject").ok().and_then(dict_at).map(|xo| xo.iter().filter_map(|(_, v)| v.as_reference().ok()).collect::<Vec<_>>()).unwrap_or_default()
        });
        // Without resources of its own a form draws with its caller's, itself among them
        // perhaps: refused rather than followed.
        let Some(own) = own else { return true };
        edges.insert(*id, own);
    }
    // Depth-first, each form once: a form met again on the current path is a cycle; the
    // depth of a finished form is one more than its deepest callee's.
    let mut depth: HashMap<ObjectId, usize> = HashMap::new();
    let mut on_path: std::collections::HashSet<ObjectId> = std::collections::HashSet::new();
    for start in edges.keys() {
        if depth.contains_key(start) {
            continue;
        }
        let mut path: Vec<(ObjectId, usize)> = vec![(*start, 0)];
        on_path.insert(*start);
        while let Some((node, next)) = path.last().copied() {
            let out = edges.get(&node).map(Vec::as_slice).unwrap_or(&[]);
            if next >= out.len() {
                let d = 1 + out.iter().filter_map(|c| depth.get(c)).max().copied().unwrap_or(0);
                if d > 32 {
                    return true;
                }
                depth.insert(node, d);
                on_path.remove(&node);
                path.pop();
                continue;
            }
            path.last_mut().unwrap().1 += 1;
            let child = out[next];
            if on_path.contains(&child) {
                return true;
            }
            if !edges.contains_key(&child) || depth.contains_key(&child) {
                continue;
            }
            on_path.insert(child);
            path.push((child, 0));
        }
    }
    false
}

/// pdf-extract's plain-text output, stopped once the text passes `max_chars` or the time budget.
struct BoundedPdfText<'a, W: pdf_extract::ConvertToFmt> {
    inner: pdf_extract::PlainTextOutput<W>,
    chars: u64,
    limits: &'a ReaderLimits,
    deadline: Deadline,
    refused: Option<String>,
}

impl<W: pdf_extract::ConvertToFmt> BoundedPdfText<'_, W> {
    fn stop(&mut self, reason: String) -> Result<(), pdf_extract::OutputError> {
        self.refused = Some(reason.clone());
        Err(pdf_extract::OutputError::IoError(std::io::Error::other(reason)))
    }
}

impl<W: pdf_extract::ConvertToFmt> pdf_extract::OutputDev for BoundedPdfText<'_, W> {
    fn begin_page(&mut self, page_num: u32, media_box: &pdf_extract::MediaBox, art_box: Option<(f64, f64, f64, f64)>) -> Result<(), pdf_extract::OutputError> {
        if let Err(r) = self.deadline.check(&format!("extracting page {page_num}")) {
            return self.stop(r);
        }
        self.inner.begin_page(page_num, media_box, art_box)
    }
    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.end_page()
    }
    fn output_character(&mut self, trm: &pdf_extract::Transform, width: f64, spacing: f64, font_size: f64, char: &str) -> Result<(), pdf_extract::OutputError> {
        self.chars += char.chars().count() as u64 + 1;
        if self.chars > self.limits.max_chars {
            return self.stop(over(format!("the text has more than {} characters", self.limits.max_chars), "max_chars", self.limits.max_chars));
        }
        if self.chars % 65_536 == 0 {
            if let Err(r) = self.deadline.check("extracting text") {
                return self.stop(r);
            }
        }
        self.inner.output_character(trm, width, spacing, font_size, char)
    }
    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.begin_word()
    }
    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.end_word()
    }
    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.end_line()
    }
}

/// Paragraph text of a .docx (word/document.xml: w:p paragraphs, w:t runs), within the default limits.
pub fn docx_text(path: &Path) -> Result<String, ReadError> {
    let limits = ReaderLimits::default();
    let bytes = limits::read_bounded(path, &limits).map_err(|e| err(path, e))?;
    docx_text_within(path, &bytes, &limits, Deadline::new(&limits))
}

/// Paragraph text of a .docx: word/document.xml read through a bounded reader (its declared
/// size and ratio checked first), the text stopped at `max_chars`.
fn docx_text_within(path: &Path, bytes: &[u8], limits: &ReaderLimits, deadline: Deadline) -> Result<String, ReadError> {
    use quick_xml::events::Event;
    let mut guard = limits::ZipGuard::open(bytes, limits, deadline, "docx").map_err(|e| err(path, e))?;
    let xml = guard.read_entry("word/document.xml").map_err(|e| err(path, e))?.ok_or_else(|| err(path, "not a docx: no word/document.xml"))?;
    let xml = String::from_utf8(xml).map_err(|e| err(path, format!("word/document.xml is not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = String::new();
    let mut in_text = false;
    let mut events = 0u64;
    loop {
        events += 1;
        if events % 65_536 == 0 {
            deadline.check("reading word/document.xml").map_err(|e| err(path, e))?;
            if out.len() as u64 > limits.max_chars.saturating_mul(4) || out.chars().count() as u64 > limits.max_chars {
                return Err(err(path, over(format!("the text has more than {} characters", limits.max_chars), "max_chars", limits.max_chars)));
            }
        }
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
