//! Builds a SentencePiece `precompiled_charsmap` (a Darts double-array trie plus the
//! replacement strings) from a per-codepoint normalization map, so that Hugging Face
//! tokenizers' `Precompiled` normalizer applies exactly that map.
//!
//! Layout read by `spm_precompiled`: `[u32 trie bytes][trie units: u32 LE][replacements, each \0-ended]`.
//! A unit holds a label (low 8 bits), a has-leaf flag (bit 8) and the XOR offset to its
//! children (bits 10..31); a leaf unit (bit 31 set) holds the offset of the replacement.

use std::collections::{BTreeMap, HashSet, VecDeque};

#[derive(Default)]
struct Node {
    children: BTreeMap<u8, usize>,
    value: Option<u32>,
}

const LEAF_BIT: u32 = 1 << 31;
const HAS_LEAF: u32 = 1 << 8;
const MAX_OFFSET: usize = 1 << 21;

/// `map`: codepoint → replacement (possibly empty = delete). Keys must not be NUL.
pub fn build(map: &BTreeMap<char, String>) -> Vec<u8> {
    // Replacement strings, deduplicated.
    let mut normalized: Vec<u8> = Vec::new();
    let mut offsets: BTreeMap<&str, u32> = BTreeMap::new();
    let mut nodes = vec![Node::default()];
    for (ch, repl) in map {
        assert!(*ch != '\0', "NUL cannot be a charsmap key");
        let off = *offsets.entry(repl.as_str()).or_insert_with(|| {
            let off = normalized.len() as u32;
            normalized.extend_from_slice(repl.as_bytes());
            normalized.push(0);
            off
        });
        let mut buf = [0u8; 4];
        let mut node = 0;
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            node = match nodes[node].children.get(&b) {
                Some(&n) => n,
                None => {
                    nodes.push(Node::default());
                    let n = nodes.len() - 1;
                    nodes[node].children.insert(b, n);
                    n
                }
            };
        }
        nodes[node].value = Some(off);
    }

    let mut units: Vec<u32> = vec![0; 256];
    let mut used: Vec<bool> = vec![false; 256];
    used[0] = true; // the root
    let mut used_bases: HashSet<usize> = HashSet::new();
    let mut queue = VecDeque::from([(0usize, 0usize)]); // (node, position)
    let mut search_from = 1usize;
    while let Some((node, pos)) = queue.pop_front() {
        let mut labels: Vec<usize> = nodes[node].children.keys().map(|&b| b as usize).collect();
        if nodes[node].value.is_some() {
            labels.push(0);
        }
        if labels.is_empty() {
            continue;
        }
        // First free base where every child slot is free.
        let mut base = search_from;
        loop {
            if !used_bases.contains(&base) {
                let block_end = (base | 255) + 1;
                if units.len() < block_end {
                    units.resize(block_end, 0);
                    used.resize(block_end, false);
                }
                if labels.iter().all(|&l| !used[base ^ l]) {
                    break;
                }
            }
            base += 1;
        }
        while search_from < used.len() && used[search_from] {
            search_from += 1;
        }
        let offset = pos ^ base;
        assert!(offset < MAX_OFFSET, "charsmap too large for a plain double-array offset");
        used_bases.insert(base);
        units[pos] |= (offset as u32) << 10;
        if let Some(v) = nodes[node].value {
            units[pos] |= HAS_LEAF;
            units[base] = v | LEAF_BIT;
            used[base] = true;
        }
        for (&label, &child) in &nodes[node].children {
            let slot = base ^ label as usize;
            used[slot] = true;
            units[slot] = label as u32;
            queue.push_back((child, slot));
        }
    }

    let mut out = Vec::with_capacity(4 + units.len() * 4 + normalized.len());
    out.extend_from_slice(&((units.len() * 4) as u32).to_le_bytes());
    for u in &units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&normalized);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::normalizers::Precompiled;
    use tokenizers::{NormalizedString, Normalizer};

    fn normalize(p: &Precompiled, s: &str) -> String {
        let mut n = NormalizedString::from(s);
        p.normalize(&mut n).unwrap();
        n.get().to_string()
    }

    #[test]
    fn charsmap_applies_each_mapping() {
        let mut map = BTreeMap::new();
        map.insert('Ａ', "A".to_string()); // full width → ASCII
        map.insert('\u{3000}', " ".to_string()); // ideographic space
        map.insert('\u{200b}', String::new()); // zero-width space is deleted
        map.insert('㍻', "平成".to_string()); // one → many
        map.insert('\t', " ".to_string());
        for c in '①'..='⑳' {
            map.insert(c, (c as u32 - '①' as u32 + 1).to_string());
        }
        let bytes = build(&map);
        let p = Precompiled::from(&bytes).unwrap();
        assert_eq!(normalize(&p, "Ａ社保\u{3000}卡\u{200b}"), "A社保 卡");
        assert_eq!(normalize(&p, "㍻\t⑫号"), "平成 12号");
        assert_eq!(normalize(&p, "无需变化的中文"), "无需变化的中文");
    }
}
