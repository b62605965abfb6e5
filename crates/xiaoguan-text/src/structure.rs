//! Document structure: a document is a title, an info preamble and blocks, each block under a
//! heading path (编/章/节 or 一、/（一）) and, for statutes, one article (第X条).

use crate::normalize::normalize;
use crate::numerals;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Headings above this block, outermost first (not including the document title).
    pub heading_path: Vec<String>,
    /// "第十六条" for a statute article.
    pub article: Option<String>,
    /// The article's number (16), for exact lookups.
    pub article_no: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Document {
    pub title: String,
    /// Lines before the body (adoption and amendment record of a statute, issuing body, date).
    pub info: Vec<String>,
    pub blocks: Vec<Block>,
}

const CN_DIGITS: &str = "零〇一二两三四五六七八九十百千";

/// `第X条` at the start of `line`: (label "第X条", number, rest of the line).
pub fn article_start(line: &str) -> Option<(String, u32, &str)> {
    let rest = line.strip_prefix('第')?;
    let end = rest.char_indices().find(|(_, c)| !CN_DIGITS.contains(*c) && !c.is_ascii_digit())?.0;
    if end == 0 {
        return None;
    }
    let after = &rest[end..];
    let after = after.strip_prefix('条')?;
    // "第三条规定的…" inside a sentence is not an article start: a real one is followed by a space,
    // the end of the line or (rarely) directly by text in very old statutes — require a separator.
    let body = if let Some(b) = after.strip_prefix(' ') {
        b
    } else if after.is_empty() {
        after
    } else {
        return None;
    };
    let number = numerals::parse(&rest[..end])?;
    Some((format!("第{}条", &rest[..end]), number, body.trim_start()))
}

/// Heading level of a plain-text line: 1 for 第X编/章 and 一、, 2 for 第X节 and （一）.
fn heading_level(line: &str) -> Option<usize> {
    let chinese_enum = |s: &str, close: &[char]| -> bool {
        let n = s.chars().take_while(|c| CN_DIGITS.contains(*c)).count();
        n > 0 && s.chars().nth(n).is_some_and(|c| close.contains(&c))
    };
    if let Some(rest) = line.strip_prefix('第') {
        let n = rest.chars().take_while(|c| CN_DIGITS.contains(*c) || c.is_ascii_digit()).count();
        match rest.chars().nth(n) {
            Some('编') | Some('章') if n > 0 => return Some(1),
            Some('节') if n > 0 => return Some(2),
            _ => {}
        }
    }
    if chinese_enum(line, &['、', '.', '．']) {
        return Some(1);
    }
    if let Some(rest) = line.strip_prefix('（').or_else(|| line.strip_prefix('(')) {
        if chinese_enum(rest, &['）', ')']) {
            return Some(2);
        }
    }
    None
}

struct Builder {
    doc: Document,
    path: Vec<(usize, String)>,
    current: Option<Block>,
}

impl Builder {
    fn new(title: String) -> Self {
        Self { doc: Document { title, ..Default::default() }, path: Vec::new(), current: None }
    }
    fn flush(&mut self) {
        if let Some(b) = self.current.take() {
            if !b.text.trim().is_empty() {
                self.doc.blocks.push(b);
            }
        }
    }
    fn heading(&mut self, level: usize, text: &str) {
        self.flush();
        self.path.retain(|(l, _)| *l < level);
        self.path.push((level, text.to_string()));
    }
    fn heading_path(&self) -> Vec<String> {
        self.path.iter().map(|(_, h)| h.clone()).collect()
    }
    fn start(&mut self, article: Option<(String, u32)>, first: &str) {
        self.flush();
        let (article, article_no) = match article {
            Some((a, n)) => (Some(a), Some(n)),
            None => (None, None),
        };
        self.current = Some(Block { heading_path: self.heading_path(), article, article_no, text: first.to_string() });
    }
    fn push_line(&mut self, line: &str) {
        match &mut self.current {
            Some(b) => {
                if !b.text.is_empty() {
                    b.text.push('\n');
                }
                b.text.push_str(line);
            }
            None => self.start(None, line),
        }
    }
    fn finish(mut self) -> Document {
        self.flush();
        self.doc
    }
}

/// A LawRefBook statute: `# title`, info lines, `<!-- INFO END -->`, `## 第X章`, `### 第X节`,
/// articles `第X条 …` (paragraphs after an article line belong to it).
pub fn parse_law_markdown(text: &str) -> Document {
    let text = normalize(text);
    let has_info_end = text.contains("<!-- INFO END -->");
    let mut b = Builder::new(String::new());
    let mut in_info = has_info_end;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix("# ") {
            if b.doc.title.is_empty() {
                b.doc.title = t.trim().to_string();
            } else {
                // A second top-level heading is a part (编) of a code such as the 民法典.
                b.heading(0, t.trim());
            }
            continue;
        }
        if line == "<!-- INFO END -->" {
            in_info = false;
            continue;
        }
        if in_info {
            b.doc.info.push(line.to_string());
            continue;
        }
        if line.starts_with("<!--") {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes >= 2 && line[hashes..].starts_with(' ') {
            b.heading(hashes, line[hashes..].trim());
            continue;
        }
        if let Some((label, n, body)) = article_start(line) {
            b.start(Some((label, n)), body);
            continue;
        }
        b.push_line(line);
    }
    b.finish()
}

/// "附件1" / "附件 2" alone on a line: an attachment starts (a heading of its own, above 一、).
fn attachment_heading(line: &str) -> bool {
    let rest = line.strip_prefix("附件").map(|r| r.trim_end_matches([':', '：']).trim());
    rest.is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
}

/// The cells of a `|`-separated table row (at least two cells, or one cell ended by `|`).
pub fn pipe_cells(line: &str) -> Option<Vec<String>> {
    if !line.contains('|') {
        return None;
    }
    let mut cells: Vec<String> = line.split('|').map(|c| c.trim().to_string()).collect();
    if line.trim_end().ends_with('|') {
        cells.pop();
    }
    if line.trim_start().starts_with('|') {
        cells.remove(0);
    }
    (cells.len() >= 2 || (cells.len() == 1 && line.trim_end().ends_with('|'))).then_some(cells)
}

/// A table inside plain text: its header, and the record being read. A row whose first cell is
/// a number (序号) starts a record; a shorter row continues it (merged cells of the row above).
struct Table {
    header: Vec<String>,
    record_open: bool,
}

impl Table {
    fn row(&mut self, b: &mut Builder, cells: &[String]) {
        let starts = cells.first().is_some_and(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_digit()));
        let full = cells.len() == self.header.len();
        let line = if full {
            self.header.iter().zip(cells).filter(|(_, v)| !v.is_empty()).map(|(h, v)| format!("{h}：{v}")).collect::<Vec<_>>().join("\n")
        } else {
            cells.join(" | ")
        };
        if starts || !self.record_open {
            // One block per record, headed by its number and first named cell.
            let name: String = cells.iter().skip(usize::from(starts)).find(|c| !c.is_empty()).map(|c| c.chars().take(30).collect()).unwrap_or_default();
            b.flush();
            let mut path = b.heading_path();
            path.push(if starts { format!("{} {name}", cells[0]) } else { name });
            let header_line = if full { String::new() } else { format!("{}\n", self.header.join(" | ")) };
            b.current = Some(Block { heading_path: path, article: None, article_no: None, text: format!("{header_line}{line}") });
            self.record_open = true;
        } else {
            b.push_line(&line);
        }
    }
}

/// Plain text (policy documents, notices): headings 第X章/节, 一、, （一）; articles 第X条.
/// A long line that starts like a heading ("（一）参保对象：本市户籍……") starts a new block whose
/// heading path ends with its lead phrase. An attachment (附件N, its title on the next lines) is a
/// top-level heading; a `|` table under it gives one block per record (序号), every cell labelled
/// with its column, so a task row and its responsible units stay together.
pub fn parse_plain(text: &str, title: &str) -> Document {
    let text = normalize(text);
    let mut b = Builder::new(title.to_string());
    let mut table: Option<Table> = None;
    // Lines of an attachment's title still to join to its heading.
    let mut title_lines = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if attachment_heading(line) {
            table = None;
            b.heading(0, line);
            title_lines = 2;
            continue;
        }
        if let Some(cells) = pipe_cells(line) {
            title_lines = 0;
            match &mut table {
                Some(t) => t.row(&mut b, &cells),
                None => {
                    b.flush();
                    table = Some(Table { header: cells, record_open: false });
                }
            }
            continue;
        }
        if title_lines > 0 && line.chars().count() <= 60 && !line.ends_with('。') && heading_level(line).is_none() {
            title_lines -= 1;
            if let Some((_, h)) = b.path.last_mut() {
                h.push(' ');
                h.push_str(line);
            }
            continue;
        }
        title_lines = 0;
        table = None;
        if let Some((label, n, body)) = article_start(line) {
            b.start(Some((label, n)), body);
            continue;
        }
        if let Some(level) = heading_level(line) {
            let short = line.chars().count() <= 40 && !line.ends_with('。');
            if short {
                b.heading(level, line);
            } else {
                let lead: String = line.chars().take_while(|c| !"。：:；".contains(*c)).take(30).collect();
                b.heading(level, &lead);
                b.start(None, line);
            }
            continue;
        }
        b.push_line(line);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAW: &str = "# 中华人民共和国社会保险法\n\n2010年10月28日 通过\n\n<!-- INFO END -->\n\n## 第一章 总则\n\n第一条 为了规范社会保险关系，制定本法。\n\n第二条 国家建立基本养老保险制度。\n\n个人依法享受社会保险待遇。\n\n## 第二章 基本养老保险\n\n### 第一节 一般规定\n\n第十六条 参加基本养老保险的个人，按月领取基本养老金。\n\n依照第三条规定的人员除外。\n";

    #[test]
    fn parses_statute_structure() {
        let d = parse_law_markdown(LAW);
        assert_eq!(d.title, "中华人民共和国社会保险法");
        assert_eq!(d.info, ["2010年10月28日 通过"]);
        assert_eq!(d.blocks.len(), 3);
        assert_eq!(d.blocks[0].heading_path, ["第一章 总则"]);
        assert_eq!(d.blocks[0].article.as_deref(), Some("第一条"));
        assert_eq!(d.blocks[1].text, "国家建立基本养老保险制度。\n个人依法享受社会保险待遇。");
        let last = &d.blocks[2];
        assert_eq!(last.heading_path, ["第二章 基本养老保险", "第一节 一般规定"]);
        assert_eq!(last.article_no, Some(16));
        assert!(last.text.ends_with("依照第三条规定的人员除外。"), "{}", last.text);
    }

    #[test]
    fn a_code_split_into_parts_keeps_the_part_in_the_path() {
        let d = parse_law_markdown("# 中华人民共和国民法典\n\n# 合同编\n\n## 第一分编 通则\n\n### 第一章 一般规定\n\n第四百六十三条 本编调整因合同产生的民事关系。\n");
        assert_eq!(d.title, "中华人民共和国民法典");
        assert_eq!(d.blocks[0].heading_path, ["合同编", "第一分编 通则", "第一章 一般规定"]);
        assert_eq!(d.blocks[0].article_no, Some(463));
    }

    #[test]
    fn article_start_needs_a_separator() {
        assert_eq!(article_start("第一百零五条 内容").map(|a| a.1), Some(105));
        assert!(article_start("第三条规定的人员").is_none());
        assert!(article_start("第x条 内容").is_none());
        assert_eq!(article_start("第12条 内容").map(|a| a.1), Some(12));
    }

    #[test]
    fn attachments_and_their_tables() {
        let text = "一、总体目标\n提升政务服务效能。\n附件1\n主要任务\n分工表\n序号 | 任务 | 内容 | 责任部门 |\n1 | 一件事 | 落地一件事。 | 市政务和数据局牵头 |\n2 | 热线 | 解决率不低于92%。 | 市政务和数据局负责 |\n附件2\n清单及东莞分工表\n序号 | 名称 | 事项 | 东莞部门 |\n1 | 个体工商户转型为企业 | 清税信息核验 | 市税务局 |\n变更登记 | ★市市场监管局 |\n2 | 新车上牌 | 机动车注册登记 | ★市公安局 |";
        let d = parse_plain(text, "方案");
        let paths: Vec<String> = d.blocks.iter().map(|b| b.heading_path.join(" > ")).collect();
        assert_eq!(paths, ["一、总体目标", "附件1 主要任务 分工表 > 1 一件事", "附件1 主要任务 分工表 > 2 热线", "附件2 清单及东莞分工表 > 1 个体工商户转型为企业", "附件2 清单及东莞分工表 > 2 新车上牌"]);
        assert_eq!(d.blocks[2].text, "序号：2\n任务：热线\n内容：解决率不低于92%。\n责任部门：市政务和数据局负责");
        assert!(d.blocks[3].text.ends_with("东莞部门：市税务局\n变更登记 | ★市市场监管局"), "{}", d.blocks[3].text);
        assert_eq!(pipe_cells("a | b |"), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(pipe_cells("only |"), Some(vec!["only".to_string()]));
        assert_eq!(pipe_cells("no table here"), None);
        assert!(!attachment_heading("附件:1.《方案》主要任务分工表"));
    }

    #[test]
    fn parses_policy_headings() {
        let text = "关于印发办法的通知\n一、总体要求\n坚持以人民为中心。\n（一）参保对象：本市户籍的城乡居民，以及在本市就读的大中专学生。\n（二）缴费标准\n每人每年380元。\n二、保障措施\n加强组织领导。";
        let d = parse_plain(text, "通知");
        assert_eq!(d.title, "通知");
        let paths: Vec<Vec<String>> = d.blocks.iter().map(|b| b.heading_path.clone()).collect();
        assert_eq!(paths[0], Vec::<String>::new());
        assert_eq!(paths[1], ["一、总体要求"]);
        assert_eq!(paths[2], ["一、总体要求", "（一）参保对象"]);
        assert_eq!(paths[3], ["一、总体要求", "（二）缴费标准"]);
        assert_eq!(d.blocks[3].text, "每人每年380元。");
        assert_eq!(paths[4], ["二、保障措施"]);
    }
}
