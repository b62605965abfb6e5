//! Resource limits for the document readers: what one file may make a reader read, inflate,
//! parse and produce. Every limit is checked before the work it bounds (sizes from the central
//! directory or the file system first, then a bounded read that stops a lying header), and a
//! file over a limit is refused with a reason naming the limit and its value, e.g.
//! `word/document.xml inflates past 64 MiB (limit max_unzipped_bytes = 67108864)`.
//!
//! Set per knowledge base in `kb.toml` (every field optional, defaults below):
//!
//! ```toml
//! [limits]
//! max_file_bytes = 67108864
//! max_unzipped_bytes = 67108864
//! max_compression_ratio = 100
//! max_pdf_pages = 2000
//! max_pdf_objects = 200000
//! max_pdf_nesting = 100
//! max_chars = 2000000
//! max_line_chars = 200000
//! max_rows = 100000
//! max_json_depth = 64
//! max_html_depth = 256
//! max_zip_entries = 10000
//! max_read_seconds = 60
//! ```

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// Limits on what reading one file may cost. The defaults fit every file of the project's
/// corpus (the largest is a 7.6 MB JSONL file; the longest statute ≈ 110k characters) with a
/// wide margin and stop zip/PDF bombs, deep nesting and giant tables before they allocate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReaderLimits {
    /// Bytes of the file itself (checked on its metadata, then by a bounded read). Default 64 MiB.
    pub max_file_bytes: u64,
    /// Bytes after decompression: of any one zip entry (docx, xlsx) and of all entries read
    /// together, and of all the compressed streams of a PDF together. Default 64 MiB.
    pub max_unzipped_bytes: u64,
    /// Inflated / compressed size of a zip entry or PDF stream, and of a whole zip, once the
    /// inflated side passes 1 MiB (small entries compress as they like). Default 100.
    pub max_compression_ratio: u64,
    /// Pages of a PDF. Default 2,000.
    pub max_pdf_pages: u64,
    /// Objects of a PDF (its cross-reference `/Size`, then the objects parsed). Default 200,000.
    pub max_pdf_objects: u64,
    /// Nesting of arrays and dictionaries in a PDF's objects and page contents (the PDF parser
    /// recurses once per level, so 10⁵ `[` overflowed the thread's stack). Default 100.
    pub max_pdf_nesting: u64,
    /// Characters of one document's text (a text/HTML/PDF/docx body, or one record). Default 2,000,000.
    pub max_chars: u64,
    /// Characters of one line of a text/HTML/PDF/docx body. Default 200,000.
    pub max_line_chars: u64,
    /// Rows of a sheet (csv, xlsx) and records of a JSON/JSONL file. Default 100,000.
    pub max_rows: u64,
    /// Nesting depth of JSON (arrays and objects); at most 127 (serde_json's own guard is 128). Default 64.
    pub max_json_depth: u64,
    /// Nesting depth of HTML elements. Default 256.
    pub max_html_depth: u64,
    /// Entries of a zip container (docx, xlsx). Default 10,000.
    pub max_zip_entries: u64,
    /// Wall-clock budget for reading one file, checked as the reader goes. Default 60 s.
    pub max_read_seconds: u64,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_file_bytes: 64 * MIB,
            max_unzipped_bytes: 64 * MIB,
            max_compression_ratio: 100,
            max_pdf_pages: 2_000,
            max_pdf_objects: 200_000,
            max_pdf_nesting: 100,
            max_chars: 2_000_000,
            max_line_chars: 200_000,
            max_rows: 100_000,
            max_json_depth: 64,
            max_html_depth: 256,
            max_zip_entries: 10_000,
            max_read_seconds: 60,
        }
    }
}

impl ReaderLimits {
    /// A definition's limits are usable (each at least 1, JSON depth within serde_json's).
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("max_file_bytes", self.max_file_bytes),
            ("max_unzipped_bytes", self.max_unzipped_bytes),
            ("max_compression_ratio", self.max_compression_ratio),
            ("max_pdf_pages", self.max_pdf_pages),
            ("max_pdf_objects", self.max_pdf_objects),
            ("max_pdf_nesting", self.max_pdf_nesting),
            ("max_chars", self.max_chars),
            ("max_line_chars", self.max_line_chars),
            ("max_rows", self.max_rows),
            ("max_json_depth", self.max_json_depth),
            ("max_html_depth", self.max_html_depth),
            ("max_zip_entries", self.max_zip_entries),
            ("max_read_seconds", self.max_read_seconds),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        if self.max_json_depth > 127 {
            return Err(format!("limits.max_json_depth = {} is above 127 (serde_json's recursion guard)", self.max_json_depth));
        }
        Ok(())
    }
}

/// Bytes in a reason: "64 MiB" for whole MiB, else the byte count.
pub fn bytes(n: u64) -> String {
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// Why a file was refused: "<what> (limit <name> = <value>)".
pub fn over(what: impl std::fmt::Display, name: &str, value: impl std::fmt::Display) -> String {
    format!("{what} (limit {name} = {value})")
}

/// The wall-clock budget of one read.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn new(limits: &ReaderLimits) -> Self {
        Deadline { start: Instant::now(), budget: Duration::from_secs(limits.max_read_seconds) }
    }
    /// Err once the budget is spent; `doing` says where.
    pub fn check(&self, doing: &str) -> Result<(), String> {
        if self.start.elapsed() > self.budget {
            Err(over(format!("reading took more than {} s ({doing})", self.budget.as_secs()), "max_read_seconds", self.budget.as_secs()))
        } else {
            Ok(())
        }
    }
}

/// The whole file, refused when its size passes `max_file_bytes` (the metadata first, then a
/// bounded read, so a file that grows or a device that never ends is stopped too).
pub fn read_bounded(path: &Path, limits: &ReaderLimits) -> Result<Vec<u8>, String> {
    let max = limits.max_file_bytes;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("is a folder".into());
    }
    if meta.len() > max {
        return Err(over(format!("file is {} bytes", meta.len()), "max_file_bytes", max));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(over(format!("file is more than {} bytes", bytes(max)), "max_file_bytes", max));
    }
    Ok(buf)
}

/// Entries declared by a zip's end-of-central-directory record (None when it is not found or
/// says zip64; the archive reader then finds out itself, within the file-size limit).
fn declared_zip_entries(data: &[u8]) -> Option<u64> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    let from = data.len().saturating_sub(22 + 65_535);
    let at = (from..data.len().saturating_sub(21)).rev().find(|&i| data[i..i + 4] == EOCD)?;
    let total = u16::from_le_bytes([data[at + 10], data[at + 11]]);
    (total != 0xFFFF).then_some(total as u64)
}

fn ratio_over(inflated: u64, compressed: u64, limits: &ReaderLimits) -> bool {
    inflated > MIB && inflated > compressed.max(1).saturating_mul(limits.max_compression_ratio)
}

/// A zip container checked against the limits: entry count, then the sizes its central
/// directory declares (per entry and in total, and their ratios). The declared sizes only
/// give an early refusal: every entry is read through [`ZipGuard::read_entry`] or
/// [`ZipGuard::verify_all`], which count the bytes that really come out.
pub struct ZipGuard<'a> {
    pub zip: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    limits: &'a ReaderLimits,
    deadline: Deadline,
    /// Bytes inflated so far over all entries, and the compressed bytes they came from.
    inflated: u64,
    compressed: u64,
}

impl<'a> ZipGuard<'a> {
    pub fn open(data: &'a [u8], limits: &'a ReaderLimits, deadline: Deadline, kind: &str) -> Result<Self, String> {
        if let Some(n) = declared_zip_entries(data) {
            if n > limits.max_zip_entries {
                return Err(over(format!("the zip declares {n} entries"), "max_zip_entries", limits.max_zip_entries));
            }
        }
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(|e| format!("not a {kind} (zip): {e}"))?;
        if zip.len() as u64 > limits.max_zip_entries {
            return Err(over(format!("the zip has {} entries", zip.len()), "max_zip_entries", limits.max_zip_entries));
        }
        let (mut total, mut total_compressed) = (0u64, 0u64);
        for i in 0..zip.len() {
            let e = zip.by_index_raw(i).map_err(|e| format!("not a {kind} (zip entry {i}): {e}"))?;
            let (size, csize) = (e.size(), e.compressed_size());
            if size > limits.max_unzipped_bytes {
                return Err(over(format!("{} declares {size} bytes uncompressed", e.name()), "max_unzipped_bytes", limits.max_unzipped_bytes));
            }
            if ratio_over(size, csize, limits) {
                return Err(over(
                    format!("{} declares a compression ratio of {}", e.name(), size / csize.max(1)),
                    "max_compression_ratio",
                    limits.max_compression_ratio,
                ));
            }
            total = total.saturating_add(size);
            total_compressed = total_compressed.saturating_add(csize);
        }
        if total > limits.max_unzipped_bytes {
            return Err(over(format!("the zip declares {total} bytes uncompressed in all"), "max_unzipped_bytes", limits.max_unzipped_bytes));
        }
        if ratio_over(total, total_compressed, limits) {
            return Err(over(
                format!("the zip declares a compression ratio of {}", total / total_compressed.max(1)),
                "max_compression_ratio",
                limits.max_compression_ratio,
            ));
        }
        deadline.check("opening the zip")?;
        Ok(ZipGuard { zip, limits, deadline, inflated: 0, compressed: 0 })
    }

    /// Inflate entry `index` into `sink` (None: count only), stopping as soon as it passes
    /// `max_unzipped_bytes` (alone or with the entries read before) or the ratio cap,
    /// whatever its header says.
    fn pump(&mut self, index: usize, mut sink: Option<&mut Vec<u8>>) -> Result<(), String> {
        let limits = self.limits;
        let mut entry = self.zip.by_index(index).map_err(|e| format!("zip entry {index}: {e}"))?;
        let name = entry.name().to_string();
        let csize = entry.compressed_size();
        let left = limits.max_unzipped_bytes.saturating_sub(self.inflated);
        let mut bounded = (&mut entry).take(left.saturating_add(1));
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = match bounded.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("{name}: {e}")),
            };
            got += n as u64;
            if self.inflated + got > limits.max_unzipped_bytes {
                return Err(over(format!("{name} inflates past {}", bytes(limits.max_unzipped_bytes)), "max_unzipped_bytes", limits.max_unzipped_bytes));
            }
            if ratio_over(got, csize, limits) {
                return Err(over(
                    format!("{name} inflates more than {} times its compressed size", limits.max_compression_ratio),
                    "max_compression_ratio",
                    limits.max_compression_ratio,
                ));
            }
            if let Some(s) = sink.as_deref_mut() {
                s.extend_from_slice(&buf[..n]);
            }
            if got % (4 * MIB) < n as u64 {
                self.deadline.check(&format!("inflating {name}"))?;
            }
        }
        self.inflated += got;
        self.compressed += csize;
        if ratio_over(self.inflated, self.compressed, limits) {
            return Err(over(
                format!("the zip inflates more than {} times its compressed size", limits.max_compression_ratio),
                "max_compression_ratio",
                limits.max_compression_ratio,
            ));
        }
        Ok(())
    }

    /// The bytes of the entry called `name` (None when there is none), bounded as in `pump`.
    pub fn read_entry(&mut self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(index) = self.zip.index_for_name(name) else { return Ok(None) };
        let mut out = Vec::new();
        self.pump(index, Some(&mut out))?;
        Ok(Some(out))
    }

    /// Inflate every entry once, counting: after this, no reader of the same bytes can get
    /// more out of the container than the limits allow.
    pub fn verify_all(&mut self) -> Result<(), String> {
        for i in 0..self.zip.len() {
            self.pump(i, None)?;
        }
        Ok(())
    }
}

/// Depth of the deepest array/object nesting of JSON text (strings skipped), stopping as soon
/// as it passes `max`: O(n), no allocation, safe on any input.
pub fn json_depth_over(text: &str, max: u64) -> Option<u64> {
    let (mut depth, mut in_str, mut esc) = (0u64, false, false);
    for &b in text.as_bytes() {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Checks the text a reader produced: characters of the whole document and of its longest line.
pub fn check_text(text: &str, limits: &ReaderLimits, what: &str) -> Result<(), String> {
    let mut chars = 0u64;
    for line in text.split('\n') {
        let n = line.chars().count() as u64;
        if n > limits.max_line_chars {
            return Err(over(format!("{what} has a line of {n} characters"), "max_line_chars", limits.max_line_chars));
        }
        chars += n + 1;
        if chars > limits.max_chars + 1 {
            return Err(over(format!("{what} has more than {} characters", limits.max_chars), "max_chars", limits.max_chars));
        }
    }
    Ok(())
}

/// Bytes a PDF's streams inflate to, checked before the PDF parser decompresses any of them
/// (lopdf inflates object streams while loading, pdf-extract the page contents and fonts,
/// neither with a bound). Every `stream … endstream` body that is a zlib stream is inflated
/// through a bounded reader, nested zlib layers too; the total must stay within
/// `max_unzipped_bytes` and each stream within the ratio cap. Streams whose filters this
/// check cannot bound (LZW, or a compression after another filter) are refused.
pub fn check_pdf_streams(data: &[u8], limits: &ReaderLimits, deadline: Deadline) -> Result<(), String> {
    let mut total = 0u64;
    let mut pos = 0usize;
    let mut streams = 0u64;
    while let Some(off) = find(&data[pos..], b"stream") {
        let kw = pos + off;
        pos = kw + 6;
        if kw >= 3 && &data[kw - 3..kw] == b"end" {
            continue;
        }
        // The body starts after the end of line that follows the keyword.
        let mut start = kw + 6;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        } else if start == kw + 6 {
            continue; // "stream" inside some other token
        }
        streams += 1;
        if streams % 256 == 0 {
            deadline.check("checking PDF streams")?;
        }
        // The stream dictionary: back to the "obj" keyword that opens the object.
        let dict_from = kw.saturating_sub(4096);
        let dict_start = rfind(&data[dict_from..kw], b"obj").map(|i| dict_from + i).unwrap_or(dict_from);
        let dict = unescape_names(&data[dict_start..kw]);
        let names: [&[u8]; 5] = [b"/FlateDecode", b"/LZWDecode", b"/ASCII85Decode", b"/ASCIIHexDecode", b"/RunLengthDecode"];
        let filters: Vec<&[u8]> = names
            .into_iter()
            .filter(|f| find(&dict, f).is_some())
            .collect();
        if filters.contains(&&b"/LZWDecode"[..]) {
            return Err("PDF stream uses LZWDecode, which is not read (its output cannot be bounded)".into());
        }
        if filters.contains(&&b"/FlateDecode"[..]) && filters.len() > 1 {
            return Err("PDF stream chains FlateDecode with another filter, which is not read (its output cannot be bounded)".into());
        }
        let end = find(&data[start..], b"endstream").map(|i| start + i).unwrap_or(data.len());
        let body = &data[start..end];
        total += inflated_size(body, limits, total, 0)?;
        pos = end.max(pos);
    }
    Ok(())
}

/// Bytes `body` inflates to if it is a zlib stream (0 if it is not), nested zlib layers
/// included, with `before` bytes already counted against the limit.
pub fn inflated_size(body: &[u8], limits: &ReaderLimits, before: u64, level: u32) -> Result<u64, String> {
    if body.len() < 2 || body[0] & 0x0f != 8 || (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 != 0 || level > 4 {
        return Ok(0);
    }
    let max = limits.max_unzipped_bytes;
    let left = max.saturating_sub(before);
    let mut dec = flate2::read::ZlibDecoder::new(body).take(left.saturating_add(1));
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) | Err(_) => break, // a broken stream: the parser will say so, or skip it
            Ok(n) => n,
        };
        got += n as u64;
        if before + got > max {
            return Err(over(format!("PDF streams inflate past {}", bytes(max)), "max_unzipped_bytes", max));
        }
        if ratio_over(got, body.len() as u64, limits) {
            return Err(over(
                format!("a PDF stream inflates more than {} times its compressed size", limits.max_compression_ratio),
                "max_compression_ratio",
                limits.max_compression_ratio,
            ));
        }
        // Keep the start of the output, to see whether it is compressed again.
        if head.len() < 2 {
            head.extend_from_slice(&buf[..n.min(2)]);
        }
    }
    if head.len() == 2 && head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0 {
        // Another zlib layer: inflate the whole first layer (bounded above) and count the next.
        let mut first = Vec::new();
        let _ = flate2::read::ZlibDecoder::new(body).take(got).read_to_end(&mut first);
        got += inflated_size(&first, limits, before + got, level + 1)?;
    }
    Ok(got)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = from + hay[from..hay.len() - needle.len() + 1].iter().position(|&b| b == first)?;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    (0..=hay.len().checked_sub(needle.len())?).rev().find(|&i| &hay[i..i + needle.len()] == needle)
}

/// PDF names with `#xx` escapes written out (`/Fl#61teDecode` is `/FlateDecode`).
fn unescape_names(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'#' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The largest `/Size N` a PDF declares (its trailer or cross-reference stream): the number
/// of objects it says it has, read before parsing it.
pub fn pdf_declared_objects(data: &[u8]) -> Option<u64> {
    let mut best = None;
    let mut pos = 0;
    while let Some(i) = find(&data[pos..], b"/Size") {
        let at = pos + i + 5;
        pos = at;
        let digits: String =
            data[at..].iter().skip_while(|b| b.is_ascii_whitespace()).take_while(|b| b.is_ascii_digit()).take(19).map(|&b| b as char).collect();
        if let Ok(n) = digits.parse::<u64>() {
            best = Some(best.map_or(n, |b: u64| b.max(n)));
        }
    }
    best
}

/// Approximate depth of element nesting of HTML, before parsing it (the HTML parser's
/// scope checks grow with the depth, so a page of 10⁵ nested elements takes minutes): start
/// tags push, end tags pop back to their name, void elements and elements the parser closes
/// by itself (p, li, td, …) do not count, comments, scripts and styles are skipped.
pub fn html_depth_over(html: &str, max: u64) -> Option<u64> {
    const VOID: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "param", "keygen",
    ];
    const AUTO_CLOSED: &[&str] = &[
        "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp", "thead", "tbody", "tfoot", "colgroup", "caption",
        "html", "head", "body",
    ];
    let b = html.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"<!--") {
            i = find(&b[i + 4..], b"-->").map(|j| i + 4 + j + 3).unwrap_or(b.len());
            continue;
        }
        let closing = b.get(i + 1) == Some(&b'/');
        let name_start = i + 1 + closing as usize;
        let name_len = b[name_start.min(b.len())..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
        if name_len == 0 {
            i += 1;
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let tag_end = b[name_start..].iter().position(|&c| c == b'>').map(|j| name_start + j).unwrap_or(b.len());
        let self_closing = tag_end > 0 && tag_end < b.len() && b[tag_end - 1] == b'/';
        i = tag_end.saturating_add(1);
        if closing {
            if let Some(at) = stack.iter().rposition(|n| *n == name) {
                stack.truncate(at);
            }
            continue;
        }
        if matches!(name.as_str(), "script" | "style" | "textarea" | "title" | "xmp") {
            // Skip to the matching end tag (ASCII case-insensitive).
            let from = i.min(b.len());
            i = b[from..]
                .windows(name.len() + 2)
                .position(|w| w[0] == b'<' && w[1] == b'/' && w[2..].eq_ignore_ascii_case(name.as_bytes()))
                .map(|j| from + j)
                .unwrap_or(b.len());
            continue;
        }
        if self_closing || VOID.contains(&name.as_str()) || AUTO_CLOSED.contains(&name.as_str()) {
            continue;
        }
        stack.push(name);
        if stack.len() as u64 > max {
            return Some(stack.len() as u64);
        }
    }
    None
}

/// Page objects (`/Type /Page`, not `/Pages`) in a PDF's raw bytes: a lower bound of its page
/// count read before parsing (pages inside object streams are counted after parsing).
pub fn pdf_page_objects(data: &[u8]) -> u64 {
    let mut n = 0;
    let mut pos = 0;
    while let Some(i) = find(&data[pos..], b"/Type") {
        let mut at = pos + i + 5;
        pos = at;
        while data.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        if data[at.min(data.len())..].starts_with(b"/Page") && !data.get(at + 5).is_some_and(|b| b.is_ascii_alphanumeric()) {
            n += 1;
        }
    }
    n
}

/// Deepest nesting of arrays (`[`) and dictionaries (`<<`) in PDF syntax, stopping once it
/// passes `max`: strings, comments and inline image data are skipped, and with `skip_streams`
/// the bodies of `stream … endstream` too (they are scanned, decompressed, on their own).
pub fn pdf_nesting_over(data: &[u8], max: u64, skip_streams: bool) -> Option<u64> {
    let ws = |b: Option<&u8>| b.is_none_or(|c| c.is_ascii_whitespace());
    let (mut depth, mut i) = (0u64, 0usize);
    while i < data.len() {
        match data[i] {
            b'(' => {
                // A literal string: balanced parentheses, backslash escapes.
                let mut level = 1u32;
                i += 1;
                while i < data.len() && level > 0 {
                    match data[i] {
                        b'\\' => i += 1,
                        b'(' => level += 1,
                        b')' => level -= 1,
                        _ => {}
                    }
                    i += 1;
                }
                continue;
            }
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 2;
            }
            b'<' => {
                i = find(&data[i..], b">").map(|j| i + j + 1).unwrap_or(data.len());
                continue;
            }
            b'>' if data.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 2;
                continue;
            }
            b'[' => {
                depth += 1;
                i += 1;
            }
            b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            b's' if skip_streams && data[i..].starts_with(b"stream") && !(i >= 3 && &data[i - 3..i] == b"end") => {
                i = find(&data[i..], b"endstream").map(|j| i + j + 9).unwrap_or(data.len());
                continue;
            }
            b'I' if data.get(i + 1) == Some(&b'D') && ws(i.checked_sub(1).map(|k| &data[k])) && ws(data.get(i + 2)) => {
                // Inline image data, up to "EI".
                let from = i + 2;
                i = (from..data.len().saturating_sub(1))
                    .find(|&k| data[k] == b'E' && data[k + 1] == b'I' && ws(data.get(k - 1)) && ws(data.get(k + 2)))
                    .map(|k| k + 2)
                    .unwrap_or(data.len());
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        if depth > max {
            return Some(depth);
        }
    }
    None
}
