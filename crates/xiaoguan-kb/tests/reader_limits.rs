//! Hostile input for the document readers (issue 12): every kind of bad file is refused with a
//! reason naming the limit, quickly, and a good file still reads afterwards; and a fuzz test per
//! reader (random bytes, truncated and byte-mutated small real files, mutated XML inside valid
//! zip containers) that may only return Ok or Err — no panic, no hang.
//!
//! Every bad file is built by the test itself, streamed to a temporary folder, so the test stays
//! small in memory (the 200 MB bombs are written through the deflater 1 MiB at a time).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xiaoguan_kb::definition::SourceSpec;
use xiaoguan_kb::readers::{read_file, read_file_with};
use xiaoguan_kb::ReaderLimits;

const QUICK: Duration = Duration::from_secs(5);

fn spec() -> SourceSpec {
    serde_json::from_value(serde_json::json!({"include": ["*"], "doc_type": "policy"})).unwrap()
}

fn records_spec() -> SourceSpec {
    serde_json::from_value(serde_json::json!({
        "include": ["*"], "doc_type": "faq",
        "records": {"title": "{q}", "text": [{"field": "q"}, {"field": "a", "label": "答"}]}
    }))
    .unwrap()
}

fn spec_for(path: &Path) -> SourceSpec {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json" | "jsonl") => records_spec(),
        _ => spec(),
    }
}

/// Refused with a reason containing `expect`, within QUICK. Returns the time it took.
fn refused(path: &Path, limits: &ReaderLimits, expect: &[&str]) -> Duration {
    let t = Instant::now();
    let r = read_file_with(path, "x", &spec_for(path), limits);
    let took = t.elapsed();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    match r {
        Ok(docs) => panic!("{name}: read ({} documents), expected a refusal", docs.len()),
        Err(e) => {
            eprintln!("refused in {:>7.1} ms: {name}: {}", took.as_secs_f64() * 1000.0, e.reason);
            assert!(expect.iter().any(|x| e.reason.contains(x)), "{name}: reason {:?} names none of {expect:?}", e.reason);
            assert!(!e.reason.contains("the reader failed"), "{name}: a reader panicked: {}", e.reason);
        }
    }
    assert!(took < QUICK, "{name}: took {took:?} to refuse");
    took
}

// ---------------------------------------------------------------- small valid files

const DOCX_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>唐山市工程建设项目施工许可办法</w:t></w:r></w:p><w:p><w:r><w:t>第一条 为了规范建设工程施工许可，</w:t></w:r><w:r><w:tab/><w:t>制定本办法。</w:t></w:r></w:p><w:p><w:r><w:t>第二条 本办法自印发之日起施行。</w:t></w:r></w:p></w:body></w:document>"#;

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
const ROOT_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;

fn sheet_xml(rows: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#);
    s.push_str(r#"<row r="1"><c r="A1" t="inlineStr"><is><t>事项名称</t></is></c><c r="B1" t="inlineStr"><is><t>承诺时限</t></is></c></row>"#);
    for (i, (a, b)) in rows.iter().enumerate() {
        let r = i + 2;
        s.push_str(&format!(r#"<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>{a}</t></is></c><c r="B{r}"><v>{b}</v></c></row>"#));
    }
    s.push_str("</sheetData></worksheet>");
    s
}

/// A zip of `entries` (name, bytes) deflated.
fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            z.start_file(*name, opt).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

fn docx_with(xml: &str) -> Vec<u8> {
    zip_bytes(&[("[Content_Types].xml", CONTENT_TYPES.as_bytes()), ("word/document.xml", xml.as_bytes())])
}

fn xlsx_with(sheet: &str) -> Vec<u8> {
    zip_bytes(&[
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
        ("_rels/.rels", ROOT_RELS.as_bytes()),
        ("xl/workbook.xml", WORKBOOK.as_bytes()),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
    ])
}

fn good_docx() -> Vec<u8> {
    docx_with(DOCX_XML)
}

fn good_xlsx() -> Vec<u8> {
    xlsx_with(&sheet_xml(&[("施工许可", "5"), ("竣工验收", "10"), ("规划许可", "7")]))
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A PDF of `objects` (numbered from 1; object 1 is the catalog) with a correct xref table.
fn pdf_bytes(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes());
    out
}

fn stream_obj(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut o = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    o.extend_from_slice(data);
    o.extend_from_slice(b"\nendstream");
    o
}

/// A one-page PDF whose page content is `content` (compressed with FlateDecode).
fn pdf_with_content(content: &[u8]) -> Vec<u8> {
    pdf_bytes(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        stream_obj("/Filter /FlateDecode", &zlib(content)),
    ])
}

fn good_pdf() -> Vec<u8> {
    pdf_with_content(b"BT /F1 12 Tf 72 712 Td (Article 1. Construction permits are issued within 5 working days.) Tj 0 -20 Td (Article 2. This rule applies from 2019.) Tj ET")
}

const GOOD_JSON: &str = r#"[{"q": "施工许可要多久？", "a": "五个工作日。"}, {"q": "竣工验收找谁？", "a": ["住建局", "规划局"]}]"#;
const GOOD_JSONL: &str = "{\"q\": \"施工许可要多久？\", \"a\": \"五个工作日。\"}\n{\"q\": \"竣工验收找谁？\", \"a\": null}\n";
const GOOD_HTML: &str = "<html><head><title>通知</title><script>var x = '<div>';</script></head><body><nav>首页</nav><div><h1>关于施工许可的通知</h1><p>第一条 施工许可五个工作日办结。<p>第二条 自印发之日起施行。<ul><li>一<li>二</ul></div></body></html>";
const GOOD_CSV: &str = "\u{feff}事项名称,承诺时限\n施工许可,5\n竣工验收,10\n\"规划,许可\",7\n";
const GOOD_MD: &str = "# 中华人民共和国测试法\n\n<!-- INFO END -->\n\n## 第一章 总则\n\n第一条 为了测试，制定本法。\n\n第二条 本法自公布之日起施行。\n";
const GOOD_TXT: &str = "唐山市关于施工许可的通知\n唐港城办发〔2019〕16号\n一、施工许可五个工作日办结。\n二、自印发之日起施行。\n";

/// The good files, by extension.
fn good_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("docx", good_docx()),
        ("xlsx", good_xlsx()),
        ("pdf", good_pdf()),
        ("json", GOOD_JSON.as_bytes().to_vec()),
        ("jsonl", GOOD_JSONL.as_bytes().to_vec()),
        ("html", GOOD_HTML.as_bytes().to_vec()),
        ("csv", GOOD_CSV.as_bytes().to_vec()),
        ("md", GOOD_MD.as_bytes().to_vec()),
        ("txt", GOOD_TXT.as_bytes().to_vec()),
    ]
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn all_good_files_read(dir: &Path) {
    for (ext, data) in good_files() {
        let p = write(dir, &format!("good.{ext}"), &data);
        let docs = read_file(&p, "good", &spec_for(&p)).unwrap_or_else(|e| panic!("good {ext}: {e}"));
        assert!(!docs.is_empty(), "good {ext}: no documents");
        let text: String = docs.iter().flat_map(|d| d.doc.blocks.iter().map(|b| b.text.clone())).collect();
        assert!(!text.trim().is_empty(), "good {ext}: no text");
    }
}

#[test]
fn the_small_good_files_read() {
    let dir = tempfile::tempdir().unwrap();
    all_good_files_read(dir.path());
    let p = write(dir.path(), "good.docx", &good_docx());
    let text: String = read_file(&p, "d", &spec()).unwrap()[0].doc.blocks.iter().map(|b| b.text.clone()).collect();
    assert!(text.contains("制定本办法") && text.contains("印发之日起施行"), "{text}");
    let p = write(dir.path(), "good.xlsx", &good_xlsx());
    let rows = read_file(&p, "x", &spec()).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].doc.blocks[0].text.contains("事项名称：施工许可") && rows[0].doc.blocks[0].text.contains("承诺时限：5"), "{:?}", rows[0].doc.blocks[0].text);
    let p = write(dir.path(), "good.pdf", &good_pdf());
    let text: String = read_file(&p, "p", &spec()).unwrap()[0].doc.blocks.iter().map(|b| b.text.clone()).collect();
    assert!(text.contains("Construction permits"), "{text}");
    let p = write(dir.path(), "good.html", GOOD_HTML.as_bytes());
    let text: String = read_file(&p, "h", &spec()).unwrap()[0].doc.blocks.iter().map(|b| b.text.clone()).collect();
    assert!(text.contains("五个工作日") && !text.contains("首页") && !text.contains("var x"), "{text}");
}

// ---------------------------------------------------------------- bombs and bad files

/// A zip whose `big` entry inflates to `mib` MiB of a repetitive `unit`, streamed to `path`.
fn write_bomb(path: &Path, small: &[(&str, &[u8])], big: &str, head: &str, unit: &str, tail: &str, mib: usize) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).compression_level(Some(9));
    for (name, data) in small {
        z.start_file(*name, opt).unwrap();
        z.write_all(data).unwrap();
    }
    z.start_file(big, opt).unwrap();
    z.write_all(head.as_bytes()).unwrap();
    let chunk = unit.repeat((1 << 20) / unit.len());
    for _ in 0..mib {
        z.write_all(chunk.as_bytes()).unwrap();
    }
    z.write_all(tail.as_bytes()).unwrap();
    z.finish().unwrap();
}

/// Rewrites the uncompressed size of entry `name` in the local and central headers to `size`.
fn lie_about_size(path: &Path, name: &str, size: u32) {
    let mut b = std::fs::read(path).unwrap();
    let n = name.as_bytes();
    let mut patched = 0;
    for i in 0..b.len().saturating_sub(46) {
        if b[i..i + 4] == [0x50, 0x4b, 0x03, 0x04] {
            let len = u16::from_le_bytes([b[i + 26], b[i + 27]]) as usize;
            if b.get(i + 30..i + 30 + len) == Some(n) {
                b[i + 22..i + 26].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        } else if b[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] {
            let len = u16::from_le_bytes([b[i + 28], b[i + 29]]) as usize;
            if b.get(i + 46..i + 46 + len) == Some(n) {
                b[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        }
    }
    assert_eq!(patched, 2, "patched the local and central headers of {name}");
    std::fs::write(path, b).unwrap();
}

const DOCX_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>"#;
const DOCX_UNIT: &str = "<w:p><w:r><w:t>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</w:t></w:r></w:p>";
const DOCX_TAIL: &str = "</w:body></w:document>";

#[test]
fn zip_bombs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let d = ReaderLimits::default();
    let mut table = Vec::new();

    // docx: word/document.xml inflates to 210 MiB from ≈ 0.2 MB.
    let bomb = dir.path().join("bomb.docx");
    write_bomb(&bomb, &[("[Content_Types].xml", CONTENT_TYPES.as_bytes())], "word/document.xml", DOCX_HEAD, DOCX_UNIT, DOCX_TAIL, 210);
    let size = std::fs::metadata(&bomb).unwrap().len();
    assert!(size < 2_000_000, "the bomb is small: {size}");
    table.push(("docx bomb (210 MiB document.xml)", size, refused(&bomb, &d, &["word/document.xml declares", "max_unzipped_bytes"])));

    // The same with a central directory (and local header) that lies: 1,000 bytes declared.
    let liar = dir.path().join("liar.docx");
    std::fs::copy(&bomb, &liar).unwrap();
    lie_about_size(&liar, "word/document.xml", 1000);
    table.push(("docx bomb, sizes lie", size, refused(&liar, &d, &["word/document.xml inflates"])));
    // With the ratio cap out of the way the byte limit still stops it.
    let no_ratio = ReaderLimits { max_compression_ratio: 1_000_000, ..Default::default() };
    table.push(("docx bomb, sizes lie, no ratio cap", size, refused(&liar, &no_ratio, &["word/document.xml inflates past 64 MiB"])));

    // xlsx: the sheet inflates to 210 MiB.
    let xbomb = dir.path().join("bomb.xlsx");
    let small: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
        ("_rels/.rels", ROOT_RELS.as_bytes()),
        ("xl/workbook.xml", WORKBOOK.as_bytes()),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.as_bytes()),
    ];
    write_bomb(
        &xbomb,
        &small,
        "xl/worksheets/sheet1.xml",
        r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        r#"<row><c t="inlineStr"><is><t>x</t></is></c></row>"#,
        "</sheetData></worksheet>",
        210,
    );
    let xsize = std::fs::metadata(&xbomb).unwrap().len();
    table.push(("xlsx bomb (210 MiB sheet)", xsize, refused(&xbomb, &d, &["xl/worksheets/sheet1.xml declares"])));
    let xliar = dir.path().join("liar.xlsx");
    std::fs::copy(&xbomb, &xliar).unwrap();
    lie_about_size(&xliar, "xl/worksheets/sheet1.xml", 1000);
    table.push(("xlsx bomb, sizes lie", xsize, refused(&xliar, &d, &["xl/worksheets/sheet1.xml inflates"])));
    table.push(("xlsx bomb, sizes lie, no ratio cap", xsize, refused(&xliar, &no_ratio, &["inflates past 64 MiB"])));

    // Many small entries: each compresses well, the whole does not pass the byte limit, but
    // the total ratio does.
    let many = dir.path().join("many.docx");
    {
        let f = std::fs::File::create(&many).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let zeros = vec![b'0'; 900_000];
        for i in 0..40 {
            z.start_file(format!("word/media/x{i}.bin"), opt).unwrap();
            z.write_all(&zeros).unwrap();
        }
        z.start_file("word/document.xml", opt).unwrap();
        z.write_all(DOCX_XML.as_bytes()).unwrap();
        z.finish().unwrap();
    }
    let msize = std::fs::metadata(&many).unwrap().len();
    table.push(("docx, 40 entries of 0.9 MB zeros", msize, refused(&many, &d, &["max_compression_ratio"])));
    let few = ReaderLimits { max_zip_entries: 10, ..Default::default() };
    table.push(("docx, 41 entries (limit 10)", msize, refused(&many, &few, &["max_zip_entries"])));

    for (what, size, took) in &table {
        eprintln!("| {what} | {size} bytes | refused in {:.1} ms |", took.as_secs_f64() * 1000.0);
    }
    all_good_files_read(dir.path());
}

#[test]
fn pdf_bombs_and_broken_pdfs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let d = ReaderLimits::default();

    // 10⁵ empty pages.
    let n = 100_000;
    let mut objects = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()];
    let kids: String = (0..n).map(|i| format!("{} 0 R ", i + 3)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{kids}] /Count {n} >>").into_bytes());
    for _ in 0..n {
        objects.push(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".to_vec());
    }
    let pages = write(dir.path(), "pages.pdf", &pdf_bytes(&objects));
    refused(&pages, &d, &["100000 page objects (limit max_pdf_pages = 2000)"]);
    // Past the raw count too (a generous page limit), the object count stops it.
    let generous = ReaderLimits { max_pdf_pages: 1_000_000, max_pdf_objects: 50_000, ..Default::default() };
    refused(&pages, &generous, &["max_pdf_objects"]);

    // A page whose content stream inflates to 200 MB of spaces, from ≈ 0.2 MB.
    let mut big = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..200 {
        big.write_all(&chunk).unwrap();
    }
    let big = big.finish().unwrap();
    let mk = |content: Vec<u8>, filter: &str| {
        pdf_bytes(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
            stream_obj(filter, &content),
        ])
    };
    let bomb = write(dir.path(), "bomb.pdf", &mk(big.clone(), "/Filter /FlateDecode"));
    refused(&bomb, &d, &["a PDF stream inflates more than 100 times"]);
    // Without the ratio cap, the byte limit.
    let no_ratio = ReaderLimits { max_compression_ratio: 1_000_000, ..Default::default() };
    refused(&bomb, &no_ratio, &["PDF streams inflate past 64 MiB"]);
    // The filter name hidden behind #xx escapes changes nothing.
    let hidden = write(dir.path(), "hidden.pdf", &mk(big.clone(), "/Filter /Fl#61teDecode"));
    refused(&hidden, &d, &["inflates more than 100 times"]);
    // Compressed twice: each layer's ratio, then the inner layer's bytes.
    let twice = zlib(&big);
    let nested = write(dir.path(), "nested.pdf", &mk(twice.clone(), "/Filter /FlateDecode"));
    refused(&nested, &d, &["inflates more than 100 times"]);
    refused(&nested, &no_ratio, &["inflate past 64 MiB"]);
    let chained = write(dir.path(), "chained.pdf", &mk(twice, "/Filter [/FlateDecode /FlateDecode]"));
    refused(&chained, &d, &["inflates more than 100 times", "chains FlateDecode"]);
    let lzw = write(dir.path(), "lzw.pdf", &mk(b"\x80\x0b\x60\x50".to_vec(), "/Filter /LZWDecode"));
    refused(&lzw, &d, &["LZWDecode"]);

    // Declared object count.
    let mut declared = good_pdf();
    let s = String::from_utf8_lossy(&declared).replace("/Size 6", "/Size 9000000").into_bytes();
    declared = s;
    let p = write(dir.path(), "declared.pdf", &declared);
    refused(&p, &d, &["declares 9000000 objects (limit max_pdf_objects = 200000)"]);

    // Garbage, truncated, a header and nothing else, nesting.
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let garbage: Vec<u8> = (0..100_000).map(|_| rng.next() as u8).collect();
    refused(&write(dir.path(), "garbage.pdf", &garbage), &d, &["not a PDF"]);
    let mut g2 = b"%PDF-1.7\n".to_vec();
    g2.extend_from_slice(&garbage);
    refused(&write(dir.path(), "garbage2.pdf", &g2), &d, &["unreadable PDF", "no text"]);
    let good = good_pdf();
    for cut in [good.len() / 4, good.len() / 2, good.len() - 40] {
        let p = write(dir.path(), "truncated.pdf", &good[..cut]);
        let t = Instant::now();
        let r = read_file_with(&p, "x", &spec(), &d);
        eprintln!("good PDF cut at {cut}: {:?} in {:?}", r.as_ref().map(|v| v.len()).map_err(|e| e.reason.clone()), t.elapsed());
        assert!(t.elapsed() < QUICK);
    }
    refused(&write(dir.path(), "header.pdf", b"%PDF-1.4\n"), &d, &["unreadable PDF"]);
    // 10⁵ nested arrays in an object (lopdf's parser recursed once per level and overflowed
    // the stack), in a page's content stream, and a form XObject that draws itself.
    let deep_obj = pdf_bytes(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /X {} >>", "[".repeat(100_000)).into_bytes(),
    ]);
    refused(&write(dir.path(), "deep.pdf", &deep_obj), &d, &["PDF objects nest deeper than 100 (limit max_pdf_nesting = 100)"]);
    let deep_content = pdf_with_content(format!("BT /F1 12 Tf 72 712 Td {} ET", "[".repeat(100_000)).as_bytes());
    refused(&write(dir.path(), "deep-content.pdf", &deep_content), &d, &["a PDF content stream nests deeper than 100"]);
    let form = pdf_bytes(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Fm0 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        stream_obj("/Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << /Fm0 4 0 R >> >>", b"/Fm0 Do"),
        stream_obj("", b"/Fm0 Do"),
    ]);
    refused(&write(dir.path(), "form-cycle.pdf", &form), &d, &["draw themselves"]);

    // The real PDFs, truncated at a few points.
    if let Some(real) = real_pdf() {
        let bytes = std::fs::read(&real).unwrap();
        for cut in [10, 1000, bytes.len() / 3, bytes.len() / 2, bytes.len() - 100] {
            let p = write(dir.path(), "cut.pdf", &bytes[..cut]);
            let t = Instant::now();
            let r = read_file_with(&p, "x", &spec(), &d);
            eprintln!("real PDF cut at {cut}: {:?} in {:?}", r.as_ref().map(|v| v.len()).map_err(|e| e.reason.clone()), t.elapsed());
            assert!(t.elapsed() < QUICK);
        }
        assert!(read_file(&real, "x", &spec()).is_ok());
    }
    all_good_files_read(dir.path());
}

fn real_pdf() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tangshan_construction_approval/pdf");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "pdf")).collect();
    v.sort();
    v.into_iter().find(|p| p.to_string_lossy().contains("16号"))
}

fn real_xlsx() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tangshan_construction_approval/事项材料清单0510.xlsx");
    p.exists().then_some(p)
}

#[test]
fn text_json_html_and_table_abuse_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let d = ReaderLimits::default();

    // Deep JSON: 10⁵ nested arrays, as a records file and as one JSONL line.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    refused(&write(dir.path(), "deep.json", deep.as_bytes()), &d, &["JSON nests deeper than 64 (limit max_json_depth = 64)"]);
    refused(&write(dir.path(), "deep.jsonl", format!("{{\"q\": {deep}}}\n").as_bytes()), &d, &["max_json_depth"]);
    // Depth inside strings does not count; at the maximum serde_json itself still answers.
    let ok = format!(r#"[{{"q": "{}", "a": "x"}}]"#, "[".repeat(10_000));
    assert!(read_file(&write(dir.path(), "strings.json", ok.as_bytes()), "x", &records_spec()).is_ok());
    let deepest = ReaderLimits { max_json_depth: 127, ..Default::default() };
    let d126 = format!(r#"[{{"q": "x", "a": {}1{}}}]"#, "[".repeat(124), "]".repeat(124));
    assert!(read_file_with(&write(dir.path(), "d126.json", d126.as_bytes()), "x", &records_spec(), &deepest).is_ok());

    // Deep HTML.
    let html = format!("<html><body>{}text{}</body></html>", "<div>".repeat(100_000), "</div>".repeat(100_000));
    refused(&write(dir.path(), "deep.html", html.as_bytes()), &d, &["HTML nests elements deeper than 256 (limit max_html_depth = 256)"]);
    // Unclosed <p> and <li> (the parser closes them itself) are not nesting.
    let flat = format!("<html><body>{}</body></html>", "<p>段落<li>条目".repeat(5_000));
    assert!(read_file(&write(dir.path(), "flat.html", flat.as_bytes()), "x", &spec()).is_ok());

    // A huge single line, too many characters, too many bytes.
    refused(&write(dir.path(), "line.txt", "长".repeat(3_000_000).as_bytes()), &d, &["a line of 3000000 characters (limit max_line_chars = 200000)"]);
    let many_lines = "第一条 规定。\n".repeat(300_000);
    refused(&write(dir.path(), "long.txt", many_lines.as_bytes()), &d, &["more than 2000000 characters (limit max_chars"]);
    let small = ReaderLimits { max_file_bytes: 1000, ..Default::default() };
    refused(&write(dir.path(), "bytes.txt", &[b'a'; 5000]), &small, &["file is 5000 bytes (limit max_file_bytes = 1000)"]);
    refused(&write(dir.path(), "bytes.md", &[b'a'; 5000]), &small, &["max_file_bytes"]);

    // GBK text, empty files.
    let gbk: &[u8] = b"\xd6\xd0\xbb\xaa\xc8\xcb\xc3\xf1\xb9\xb2\xba\xcd\xb9\xfa\xc9\xe7\xbb\xe1\xb1\xa3\xcf\xd5\xb7\xa8";
    refused(&write(dir.path(), "gbk.txt", gbk), &d, &["not UTF-8 text (byte 0; GBK"]);
    refused(&write(dir.path(), "gbk.csv", gbk), &d, &["not UTF-8"]);
    for ext in ["txt", "md", "pdf", "docx", "xlsx", "json", "jsonl", "html", "csv"] {
        refused(&write(dir.path(), &format!("empty.{ext}"), b""), &d, &["empty file (0 bytes)"]);
    }
    refused(&write(dir.path(), "blank.txt", b"  \n\n \t\n"), &d, &["no text"]);

    // Rows.
    let few = ReaderLimits { max_rows: 1000, ..Default::default() };
    let csv: String = std::iter::once("事项,时限\n".to_string()).chain((0..2000).map(|i| format!("事项{i},{i}\n"))).collect();
    refused(&write(dir.path(), "rows.csv", csv.as_bytes()), &few, &["more than 1000 rows (limit max_rows = 1000)"]);
    let rows: Vec<(String, String)> = (0..2000).map(|i| (format!("事项{i}"), i.to_string())).collect();
    let refs: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    refused(&write(dir.path(), "rows.xlsx", &xlsx_with(&sheet_xml(&refs))), &few, &["more than 1000 rows (limit max_rows = 1000)"]);
    let recs: String = (0..2000).map(|i| format!("{{\"q\": \"问{i}\", \"a\": \"答\"}}\n")).collect();
    refused(&write(dir.path(), "rows.jsonl", recs.as_bytes()), &few, &["2000 records (limit max_rows = 1000)"]);
    let arr = format!("[{}]", (0..2000).map(|i| format!("{{\"q\": \"问{i}\"}}")).collect::<Vec<_>>().join(","));
    refused(&write(dir.path(), "rows.json", arr.as_bytes()), &few, &["2000 records"]);

    // A record over max_chars.
    let one = ReaderLimits { max_chars: 1000, ..Default::default() };
    let long = format!(r#"[{{"q": "问", "a": "{}"}}]"#, "长".repeat(5000));
    refused(&write(dir.path(), "long.json", long.as_bytes()), &one, &["max_chars = 1000"]);

    // Two cells at A1 and XFD1048576: calamine's worksheet_range would allocate the whole
    // 16384 × 1048576 box (≈ 550 GB, an abort); read cell by cell it is one header and nothing.
    let sparse = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>名称</t></is></c></row><row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData></worksheet>"#;
    let t = Instant::now();
    let r = read_file(&write(dir.path(), "sparse.xlsx", &xlsx_with(sparse)), "x", &spec());
    eprintln!("sparse.xlsx (A1 and XFD1048576): {:?} in {:?}", r.as_ref().map(|v| v.len()).map_err(|e| e.reason.clone()), t.elapsed());
    assert!(r.unwrap().is_empty() && t.elapsed() < QUICK);

    // The old binary format is refused outright.
    refused(&write(dir.path(), "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest"), &d, &[".xls format is not read"]);

    // The wall-clock budget (1 s) stops a slow read; here a large but legal csv under a tiny
    // budget is not needed: the budget is checked, shown by a limit of 1 s on a fast file.
    let quick = ReaderLimits { max_read_seconds: 1, ..Default::default() };
    assert!(read_file_with(&write(dir.path(), "ok.csv", GOOD_CSV.as_bytes()), "x", &spec(), &quick).is_ok());

    all_good_files_read(dir.path());
    if let Some(x) = real_xlsx() {
        let rows = read_file(&x, "x", &spec()).unwrap();
        assert!(rows.len() > 50, "{}", rows.len());
    }
}

#[test]
fn limits_come_from_kb_toml_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let base = "id = \"t\"\ntitle = \"t\"\ndomain = \"d\"\ndescription = \"d\"\n[[sources]]\ninclude = [\"*.txt\"]\ndoc_type = \"guide\"\n";
    let p = write(dir.path(), "kb.toml", base.as_bytes());
    let def = xiaoguan_kb::KbDefinition::load(&p).unwrap();
    assert_eq!(def.limits, ReaderLimits::default());
    let p = write(dir.path(), "kb.toml", format!("{base}[limits]\nmax_rows = 10\nmax_pdf_pages = 5\n").as_bytes());
    let def = xiaoguan_kb::KbDefinition::load(&p).unwrap();
    assert_eq!((def.limits.max_rows, def.limits.max_pdf_pages, def.limits.max_chars), (10, 5, ReaderLimits::default().max_chars));
    let p = write(dir.path(), "kb.toml", format!("{base}[limits]\nmax_json_depth = 500\n").as_bytes());
    assert!(xiaoguan_kb::KbDefinition::load(&p).unwrap_err().to_string().contains("max_json_depth"));
    let p = write(dir.path(), "kb.toml", format!("{base}[limits]\nmax_rows = 0\n").as_bytes());
    assert!(xiaoguan_kb::KbDefinition::load(&p).unwrap_err().to_string().contains("max_rows"));
    let p = write(dir.path(), "kb.toml", format!("{base}[limits]\nmax_bogus = 1\n").as_bytes());
    assert!(xiaoguan_kb::KbDefinition::load(&p).is_err(), "unknown limits are errors");
}

// ---------------------------------------------------------------- fuzz

/// xorshift64*: a fixed seed, the same cases on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"<", b">", b"</", b"[", b"]", b"{", b"}", b"\"", b",", b"\n", b"\0", b"\xff", b"\xe4\xb8", b"obj", b"endobj", b"stream\n", b"endstream",
    b"/Type /Page ", b"/Count 99999999 ", b" 0 R ", b"/Length 999999 ", b"<w:t>", b"</w:p>", b"<row r=\"4294967295\">", b"<c r=\"XFD1\">",
    b"&#xffff;", b"&amp", b"<![CDATA[", b"<!--", b"<script>", b"-1", b"1e999", b"NaN", b"\\u0000", b"\\ud800",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(5) {
        0 => v.truncate(rng.below(v.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(16) {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
            }
        }
        2 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(v.len() + 1);
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, ins.iter().copied());
            }
        }
        3 => {
            // Duplicate or delete a slice.
            if v.len() > 2 {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(64)).min(v.len());
                if rng.below(2) == 0 {
                    let s = v[a..b].to_vec();
                    v.splice(a..a, s);
                } else {
                    v.drain(a..b);
                }
            }
        }
        _ => {
            let n = rng.below(4096);
            v = (0..n).map(|_| rng.next() as u8).collect();
        }
    }
    v
}

/// For a zip container, mutate the XML inside and zip it again (byte flips in the zip itself
/// mostly stop at a checksum, so this is what reaches the XML readers).
fn mutate_inside(rng: &mut Rng, ext: &str) -> Vec<u8> {
    match ext {
        "docx" => {
            let xml = mutate(rng, DOCX_XML.as_bytes());
            zip_bytes(&[("[Content_Types].xml", CONTENT_TYPES.as_bytes()), ("word/document.xml", &xml)])
        }
        _ => {
            let sheet = sheet_xml(&[("施工许可", "5"), ("竣工验收", "10")]);
            let which = rng.below(3);
            let parts: Vec<Vec<u8>> = [WORKBOOK.as_bytes(), WORKBOOK_RELS.as_bytes(), sheet.as_bytes()]
                .iter()
                .enumerate()
                .map(|(i, p)| if i == which { mutate(rng, p) } else { p.to_vec() })
                .collect();
            zip_bytes(&[
                ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
                ("_rels/.rels", ROOT_RELS.as_bytes()),
                ("xl/workbook.xml", &parts[0]),
                ("xl/_rels/workbook.xml.rels", &parts[1]),
                ("xl/worksheets/sheet1.xml", &parts[2]),
            ])
        }
    }
}

std::thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
fn fuzz_every_reader_only_ok_or_err() {
    let cases: usize = std::env::var("READER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(250);
    let seed: u64 = std::env::var("READER_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x1234_5678_9abc_def1);
    let dir = tempfile::tempdir().unwrap();
    // Panics inside the readers are caught; keep their messages off the output while fuzzing.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET.with(|q| q.get()) {
            hook(info)
        }
    }));
    let mut seeds = good_files();
    if let Some(p) = real_pdf() {
        seeds.push(("pdf", std::fs::read(p).unwrap()));
    }
    if let Some(p) = real_xlsx() {
        seeds.push(("xlsx", std::fs::read(p).unwrap()));
    }
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (k, (ext, seed_bytes)) in seeds.iter().enumerate() {
        let mut rng = Rng(seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let big = seed_bytes.len() > 100_000;
        let n = if big { cases / 5 } else { cases };
        let (mut ok, mut err, mut contained, mut slowest) = (0, 0, 0, Duration::ZERO);
        for i in 0..n {
            let data = if matches!(*ext, "docx" | "xlsx") && !big && i % 2 == 0 { mutate_inside(&mut rng, ext) } else { mutate(&mut rng, seed_bytes) };
            let path = dir.path().join(format!("case{k}.{ext}"));
            std::fs::write(&path, &data).unwrap();
            let spec = spec_for(&path);
            // Each case in its own thread, so a hang is seen as one (and fails the test).
            let (tx, rx) = std::sync::mpsc::channel();
            let p2 = path.clone();
            std::thread::spawn(move || {
                QUIET.with(|q| q.set(true));
                let t = Instant::now();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_file(&p2, "fuzz", &spec).map(|d| d.len()).map_err(|e| e.reason)));
                let _ = tx.send((r, t.elapsed()));
            });
            match rx.recv_timeout(Duration::from_secs(30)) {
                Err(_) => {
                    let keep = dir.path().join(format!("hang{k}-{i}.{ext}"));
                    let _ = std::fs::copy(&path, &keep);
                    failures.push(format!("{ext} case {i}: no answer in 30 s ({} bytes)", data.len()));
                    break;
                }
                Ok((Err(_), _)) => failures.push(format!("{ext} case {i}: read_file panicked")),
                Ok((Ok(r), took)) => {
                    slowest = slowest.max(took);
                    if took > Duration::from_secs(10) {
                        failures.push(format!("{ext} case {i}: took {took:?}"));
                    }
                    match r {
                        Ok(_) => ok += 1,
                        Err(reason) if reason.contains("the reader failed") => {
                            contained += 1;
                            // Panics inside the third-party parsers are contained and counted:
                            // pdf-extract's unwraps on malformed PDFs, and calamine's cell
                            // references (`r="AAAAAAAAA1"` overflows its u32 arithmetic, a panic
                            // in debug builds, wrapping in release, harmless to the sparse rows
                            // read here). A panic in any other reader is a bug.
                            if !matches!(*ext, "pdf" | "xlsx") {
                                failures.push(format!("{ext} case {i}: {reason}"));
                            }
                        }
                        Err(_) => err += 1,
                    }
                }
            }
        }
        summary.push(format!("{ext} ({} bytes seed): {n} cases, {ok} Ok, {err} Err, {contained} contained panics, slowest {slowest:?}", seed_bytes.len()));
    }
    let _ = std::panic::take_hook();
    for s in &summary {
        eprintln!("fuzz {s}");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.iter().take(30).cloned().collect::<Vec<_>>().join("\n"));
}

