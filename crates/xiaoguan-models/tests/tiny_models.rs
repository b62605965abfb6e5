//! Loading, tokenization, pooling, template and decoding logic on tiny models built by the test.

use candle_core::quantized::{gguf_file, GgmlDType};
use xiaoguan_models::convert::e5;
use xiaoguan_models::fixtures;
use xiaoguan_models::generate::{render_chat, Utf8Stream};
use xiaoguan_models::{BertEmbedder, ChatMessage, Decoding, Embedder, GenerateParams, Generator, ModelError, QwenGenerator, Role, StopReason, TextKind};

#[test]
fn q4_0_blocks_dequantize_low_nibbles_first() {
    // scale 0.5; byte j = (hi << 4) | lo  → value j = (lo - 8) * 0.5, value j+16 = (hi - 8) * 0.5
    let mut block = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    for j in 0..16u8 {
        block.push((15 - j) << 4 | j);
    }
    let mut out = Vec::new();
    e5::dequantize_q4_0(&block, &mut out);
    assert_eq!(out.len(), 32);
    assert_eq!(out[0], -4.0);
    assert_eq!(out[15], 3.5);
    assert_eq!(out[16], 3.5);
    assert_eq!(out[31], -4.0);
}

#[test]
fn packed_e5_parse_errors_are_specific() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.bin");
    fixtures::write_tiny_e5_packed(&path, 1).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let ok = e5::parse(&bytes, &path).unwrap();
    assert_eq!(ok.config.hidden, 64);
    assert_eq!(ok.pieces.len(), fixtures::TINY_E5_PIECES.len());
    assert_eq!(ok.normalization, fixtures::tiny_normalization());

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(e5::parse(&bad, &path).err().unwrap().to_string().contains("bad magic"));
    let truncated = &bytes[..bytes.len() / 2];
    let err = e5::parse(truncated, &path).err().unwrap().to_string();
    assert!(err.contains("x.bin") && (err.contains("truncated") || err.contains("out of range")), "{err}");
}

fn tiny_embedder() -> (tempfile::TempDir, BertEmbedder) {
    let dir = tempfile::tempdir().unwrap();
    let facts = fixtures::tiny_embedder_dir(dir.path()).unwrap();
    let e = BertEmbedder::load(dir.path(), "tiny", &facts).unwrap();
    (dir, e)
}

#[test]
fn converted_tokenizer_applies_map_metaspace_and_viterbi() {
    let (_d, e) = tiny_embedder();
    let piece = |s: &str| fixtures::TINY_E5_PIECES.iter().position(|(p, _)| *p == s).unwrap() as u32;
    // "passage: 社保卡丢了" → <s> ▁passage : ▁ 社保卡 丢 了 </s>  (Viterbi prefers 社保卡 over 社保+卡)
    let ids = e.token_ids("社保卡丢了", TextKind::Passage).unwrap();
    assert_eq!(ids, [0, piece("▁passage"), piece(":"), piece("▁"), piece("社保卡"), piece("丢"), piece("了"), 2]);
    // Normalization map: full-width Ａ → A, ideographic space → space, zero-width space removed,
    // runs of spaces collapsed.
    let a = e.token_ids("Ａ\u{3000}\u{3000}社保\u{200b}", TextKind::Query).unwrap();
    let b = e.token_ids("A 社保", TextKind::Query).unwrap();
    assert_eq!(a, b);
    // Unknown characters map to <unk>.
    assert!(e.token_ids("猫", TextKind::Passage).unwrap().contains(&3));
}

#[test]
fn embeddings_are_normalized_batch_independent_and_truncated() {
    let (_d, e) = tiny_embedder();
    assert_eq!(e.dimension(), 64);
    let texts = ["社保卡丢了怎么补办", "建筑工程施工许可证", "社保", "A B A B"];
    let batch = e.embed(&texts, TextKind::Passage).unwrap();
    for (t, v) in texts.iter().zip(&batch) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        // Padding inside a batch must not change a text's vector.
        let alone = &e.embed(&[t], TextKind::Passage).unwrap()[0];
        let cos = xiaoguan_models::cosine(v, alone);
        assert!(cos > 0.99999, "{t}: {cos}");
    }
    // Query and passage prefixes give different vectors.
    let q = &e.embed(&["社保"], TextKind::Query).unwrap()[0];
    assert!(xiaoguan_models::cosine(q, &batch[2]) < 0.99999);
    // Longer than max positions (32): truncated, still one vector, ending in </s>.
    let long = "社保卡".repeat(100);
    let ids = e.token_ids(&long, TextKind::Passage).unwrap();
    assert_eq!(ids.len(), 32);
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(e.embed(&[&long], TextKind::Passage).unwrap()[0].len(), 64);
    assert!(e.count_tokens(&long, TextKind::Passage).unwrap() > 100);
    assert!(e.embed(&[], TextKind::Passage).unwrap().is_empty());
}

#[test]
fn loading_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let facts = fixtures::tiny_embed_facts();
    let err = BertEmbedder::load(dir.path(), "x", &facts).err().unwrap().to_string();
    assert!(err.contains("config.json"), "{err}");
    fixtures::tiny_embedder_dir(dir.path()).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    let err = BertEmbedder::load(dir.path(), "x", &facts).err().unwrap().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    let gdir = tempfile::tempdir().unwrap();
    std::fs::write(gdir.path().join("model.gguf"), b"not gguf").unwrap();
    let gfacts = fixtures::tiny_generate_facts();
    let err = QwenGenerator::load(gdir.path(), "g", &gfacts).err().unwrap().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

fn tiny_generator() -> (tempfile::TempDir, QwenGenerator) {
    let dir = tempfile::tempdir().unwrap();
    let facts = fixtures::tiny_generator_dir(dir.path()).unwrap();
    let g = QwenGenerator::load(dir.path(), "tiny-qwen", &facts).unwrap();
    (dir, g)
}

#[test]
fn gguf_prepare_requantizes_q5_0_and_builds_the_tokenizer() {
    let (dir, g) = tiny_generator();
    let mut f = std::fs::File::open(dir.path().join("model.gguf")).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let types: Vec<GgmlDType> = content.tensor_infos.values().map(|t| t.ggml_dtype).collect();
    assert!(!types.contains(&GgmlDType::Q5_0), "Q5_0 left: {types:?}");
    assert!(types.contains(&GgmlDType::Q8_0));
    assert!(!dir.path().join("assembled.gguf").exists());

    let tok = g.tokenizer();
    // Special tokens are single ids; merged Chinese words are single tokens; bytes round-trip.
    let ids = tok.encode("<|im_start|>user\n社保补办<|im_end|>", false).unwrap().get_ids().to_vec();
    assert_eq!(ids[0], tok.token_to_id("<|im_start|>").unwrap());
    assert_eq!(*ids.last().unwrap(), tok.token_to_id("<|im_end|>").unwrap());
    let text = "工伤保险怎么办？ÄØ 123 emoji 🙂";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    assert!(tok.encode("社", false).unwrap().get_ids().len() == 1);
}

#[test]
fn chat_template_renders_roles_and_rejects_bad_conversations() {
    let facts = fixtures::tiny_generate_facts();
    let t = &facts.template;
    let out = render_chat(t, &[ChatMessage::new(Role::User, "你好")]).unwrap();
    assert_eq!(out, "<|im_start|>system\n你是测试助手。<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n");
    let out = render_chat(
        t,
        &[ChatMessage::new(Role::System, "S"), ChatMessage::new(Role::User, "a"), ChatMessage::new(Role::Assistant, "b"), ChatMessage::new(Role::User, "c")],
    )
    .unwrap();
    assert!(out.starts_with("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na"));
    assert!(out.contains("<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc"));
    assert!(render_chat(t, &[]).is_err());
    assert!(render_chat(t, &[ChatMessage::new(Role::User, "a"), ChatMessage::new(Role::System, "s")]).is_err());
    assert!(render_chat(t, &[ChatMessage::new(Role::User, "a"), ChatMessage::new(Role::Assistant, "b")]).is_err());
}

#[test]
fn greedy_decoding_is_deterministic_and_streams_whole_characters() {
    let (_d, g) = tiny_generator();
    let msgs = [ChatMessage::new(Role::User, "社保补办")];
    let params = GenerateParams { max_new_tokens: 24, ignore_stop: true, ..Default::default() };
    let mut deltas = Vec::new();
    let a = g.generate(&msgs, &params, &mut |d| { deltas.push(d.to_string()); true }).unwrap();
    let b = g.generate(&msgs, &params, &mut |_| true).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.stats.generated_tokens, 24);
    assert_eq!(a.stats.stop_reason, StopReason::Length);
    assert_eq!(deltas.concat(), a.text);
    // A random model emits invalid byte sequences too (shown as U+FFFD), but no delta before
    // the last may end inside a character that the next token could complete.
    let n = deltas.len();
    assert!(deltas[..n - 1].iter().all(|d| !d.ends_with('\u{FFFD}')), "{deltas:?}");
    assert!(a.stats.prompt_tokens > 5);

    // Seeded sampling is reproducible for the same seed.
    let sp = GenerateParams { decoding: Decoding::Sample { seed: 42, temperature: 1.0, top_p: 0.95 }, ..params.clone() };
    let s1 = g.generate(&msgs, &sp, &mut |_| true).unwrap();
    let s2 = g.generate(&msgs, &sp, &mut |_| true).unwrap();
    assert_eq!(s1.text, s2.text);
}

#[test]
fn generation_can_be_cancelled_and_checks_its_input() {
    let (_d, g) = tiny_generator();
    let msgs = [ChatMessage::new(Role::User, "你好")];
    let params = GenerateParams { max_new_tokens: 50, ignore_stop: true, ..Default::default() };
    let mut n = 0;
    let r = g.generate(&msgs, &params, &mut |_| { n += 1; n < 3 }).unwrap();
    assert_eq!(r.stats.stop_reason, StopReason::Cancelled);
    assert!(r.stats.generated_tokens < 50);

    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let p = GenerateParams { cancel: Some(flag), ..params.clone() };
    let r = g.generate(&msgs, &p, &mut |_| true).unwrap();
    assert_eq!(r.stats.stop_reason, StopReason::Cancelled);
    assert_eq!(r.stats.generated_tokens, 0);

    // A prompt longer than the context (256) is the caller's error.
    let long = [ChatMessage::new(Role::User, "社保".repeat(400))];
    let err = g.generate(&long, &params, &mut |_| true).unwrap_err();
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
    // max_new_tokens is capped by the context.
    let p = GenerateParams { max_new_tokens: 10_000, ..params };
    let r = g.generate(&msgs, &p, &mut |_| true).unwrap();
    assert_eq!(r.stats.prompt_tokens + r.stats.generated_tokens, 256);
}

#[test]
fn utf8_stream_holds_back_partial_characters() {
    let (_d, g) = tiny_generator();
    let tok = g.tokenizer();
    let table = fixtures::bytes_to_unicode();
    // "补" is three bytes; feed them as single-byte tokens.
    let ids: Vec<u32> = "补".bytes().map(|b| tok.token_to_id(&table[b as usize].to_string()).unwrap()).collect();
    let mut s = Utf8Stream::new(tok);
    assert_eq!(s.push(ids[0]).unwrap(), None);
    assert_eq!(s.push(ids[1]).unwrap(), None);
    assert_eq!(s.push(ids[2]).unwrap().as_deref(), Some("补"));
    assert_eq!(s.finish().unwrap(), None);
}
