//! Chunking: a statute article (第X条) is the natural unit; long blocks are split at sentence
//! boundaries with overlap; tiny non-article blocks are merged into the next block when it sits
//! under the same headings (or deeper ones). Articles are never merged: each stays citable on its own.

use crate::sentences;
use crate::structure::Document;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// A block longer than this (in characters) is split.
    pub max_chars: usize,
    /// A non-article block shorter than this is merged with the next one.
    pub min_chars: usize,
    /// Characters of trailing sentences repeated at the start of the next piece of a split block.
    pub overlap_chars: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self { max_chars: 600, min_chars: 60, overlap_chars: 100 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub heading_path: Vec<String>,
    pub article: Option<String>,
    pub article_no: Option<u32>,
    pub text: String,
    /// Position in the document (0-based).
    pub ordinal: usize,
    /// For a split block: this piece's index and the number of pieces.
    pub part: Option<(usize, usize)>,
}

impl Chunk {
    /// "社会保险法 > 第二章 基本养老保险 > 第十六条".
    pub fn display_path(&self, title: &str) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if !title.is_empty() {
            parts.push(title);
        }
        parts.extend(self.heading_path.iter().map(String::as_str));
        if let Some(a) = &self.article {
            parts.push(a);
        }
        parts.join(" > ")
    }

    /// The text given to the embedder and BM25: the path gives the chunk its context.
    pub fn index_text(&self, title: &str) -> String {
        format!("{}\n{}", self.display_path(title), self.text)
    }
}

fn split_long(text: &str, cfg: &ChunkConfig) -> Vec<String> {
    let sents = sentences::split(text);
    let mut pieces = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut len = 0;
    for s in sents {
        let n = s.chars().count();
        if len + n > cfg.max_chars && !current.is_empty() {
            pieces.push(current.concat());
            // Carry the last sentences (up to overlap_chars) into the next piece.
            let mut carried: Vec<&str> = Vec::new();
            let mut clen = 0;
            for prev in current.iter().rev() {
                let pn = prev.chars().count();
                if clen + pn > cfg.overlap_chars {
                    break;
                }
                carried.insert(0, prev);
                clen += pn;
            }
            current = carried;
            len = clen;
        }
        // A single sentence longer than max_chars is cut by characters.
        if n > cfg.max_chars {
            let chars: Vec<char> = s.chars().collect();
            for window in chars.chunks(cfg.max_chars) {
                pieces.push(window.iter().collect());
            }
            current.clear();
            len = 0;
            continue;
        }
        current.push(s);
        len += n;
    }
    if !current.is_empty() {
        let last = current.concat();
        // Do not emit a tail that is only the overlap of the previous piece.
        if pieces.last().is_none_or(|p: &String| !p.ends_with(&last)) {
            pieces.push(last);
        }
    }
    pieces
}

pub fn chunk_document(doc: &Document, cfg: &ChunkConfig) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut pending: Option<Chunk> = None; // a tiny non-article block waiting to be merged
    for block in &doc.blocks {
        let mut text = block.text.clone();
        if let Some(p) = pending.take() {
            if block.heading_path.starts_with(&p.heading_path) && block.article.is_none() {
                text = format!("{}\n{}", p.text, text);
            } else {
                out.push(p);
            }
        }
        let base = Chunk {
            heading_path: block.heading_path.clone(),
            article: block.article.clone(),
            article_no: block.article_no,
            text: String::new(),
            ordinal: 0,
            part: None,
        };
        let n = text.chars().count();
        if n > cfg.max_chars {
            let pieces = split_long(&text, cfg);
            let total = pieces.len();
            for (i, piece) in pieces.into_iter().enumerate() {
                out.push(Chunk { text: piece, part: (total > 1).then_some((i, total)), ..base.clone() });
            }
        } else if n < cfg.min_chars && block.article.is_none() {
            pending = Some(Chunk { text, ..base });
        } else {
            out.push(Chunk { text, ..base });
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    for (i, c) in out.iter_mut().enumerate() {
        c.ordinal = i;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::{parse_law_markdown, parse_plain};

    #[test]
    fn articles_are_units_and_paths_display() {
        let d = parse_law_markdown("# 社会保险法\n<!-- INFO END -->\n## 第二章 基本养老保险\n第十六条 短。\n第十七条 也短。\n");
        let chunks = chunk_document(&d, &ChunkConfig::default());
        assert_eq!(chunks.len(), 2, "tiny articles are not merged");
        assert_eq!(chunks[0].display_path(&d.title), "社会保险法 > 第二章 基本养老保险 > 第十六条");
        assert_eq!(chunks[1].ordinal, 1);
        assert!(chunks[0].index_text(&d.title).starts_with("社会保险法 > 第二章"));
    }

    #[test]
    fn long_blocks_split_at_sentences_with_overlap() {
        let sentence = "参加基本养老保险的个人达到法定退休年龄时累计缴费满十五年的按月领取基本养老金。"; // 38 chars
        let text = format!("第十六条 {}", sentence.repeat(40));
        let d = parse_law_markdown(&format!("# 法\n<!-- INFO END -->\n{text}\n"));
        let cfg = ChunkConfig { max_chars: 200, min_chars: 10, overlap_chars: 40 };
        let chunks = chunk_document(&d, &cfg);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.text.chars().count() <= 200);
            assert_eq!(c.article_no, Some(16));
            assert!(c.text.ends_with('。'));
        }
        // Overlap: each piece starts with the last sentence of the previous one.
        assert!(chunks[1].text.starts_with(sentence));
        assert_eq!(chunks[0].part, Some((0, chunks.len())));
    }

    #[test]
    fn tiny_blocks_merge_with_the_next_under_the_same_heading() {
        let d = parse_plain("一、总体要求\n短。\n（一）参保对象\n这是一段足够长的正文内容，用来说明合并规则：短小的段落会与同一标题下的下一段合并，以免产生没有信息量的碎片。", "通知");
        let chunks = chunk_document(&d, &ChunkConfig::default());
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].text.starts_with("短。\n这是"));
        assert_eq!(chunks[0].heading_path, ["一、总体要求", "（一）参保对象"]);
    }

    #[test]
    fn an_overlong_sentence_is_cut_by_characters() {
        let d = parse_plain(&"无标点长句".repeat(300), "t");
        let chunks = chunk_document(&d, &ChunkConfig { max_chars: 500, min_chars: 10, overlap_chars: 50 });
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 500));
    }
}
