//! 弱信号: urgent or extremely sensitive tickets that must be escalated at once — danger to life
//! or health, self-harm, mass incidents, safety hazards, threats and extreme sensitivity —
//! found by a lexicon, with the words that triggered each flag. A flag is a reason for a
//! person to look now, so the lexicon errs on the side of flagging.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    LifeDanger,
    SelfHarm,
    MassIncident,
    SafetyHazard,
    Threat,
    Sensitive,
}

impl SignalKind {
    pub fn label(self) -> &'static str {
        match self {
            SignalKind::LifeDanger => "生命健康危险",
            SignalKind::SelfHarm => "自伤自杀倾向",
            SignalKind::MassIncident => "群体性事件",
            SignalKind::SafetyHazard => "安全隐患",
            SignalKind::Threat => "暴力威胁",
            SignalKind::Sensitive => "极端敏感",
        }
    }
}

const LEXICON: &[(SignalKind, &[&str])] = &[
    (SignalKind::LifeDanger, &["生命危险", "危及生命", "昏迷", "晕倒", "抢救", "命悬一线", "重伤", "大出血", "被困", "救命", "窒息", "中毒", "不省人事", "心脏病发", "奄奄一息", "被打伤", "溺水"]),
    (SignalKind::SelfHarm, &["自杀", "轻生", "不想活", "活不下去", "跳楼", "跳河", "割腕", "喝农药", "寻短见", "一死了之", "以死相逼", "结束生命", "死给你们看"]),
    (SignalKind::MassIncident, &["集体上访", "群体上访", "聚集", "围堵", "拉横幅", "堵路", "堵门", "静坐", "罢工", "几十名", "上百名", "上百人", "几百人", "群体性", "集体维权", "联名"]),
    (SignalKind::SafetyHazard, &["燃气泄漏", "煤气泄漏", "天然气泄漏", "闻到煤气", "煤气味", "燃气味", "着火", "起火", "火灾", "冒烟", "爆炸", "坍塌", "倒塌", "塌陷", "垮塌", "裂缝", "漏电", "触电", "电线裸露", "危房", "滑坡", "泥石流", "管道爆裂", "消防通道堵塞", "高空坠物", "井盖丢失"]),
    (SignalKind::Threat, &["同归于尽", "报复社会", "炸了", "炸掉", "杀了", "弄死", "砍死", "放火", "拼命", "持刀", "要你们好看"]),
    (SignalKind::Sensitive, &["媒体曝光", "向媒体", "网上曝光", "上访到北京", "进京上访", "境外媒体", "邪教", "暴恐", "涉黑", "恐怖"]),
];

/// Negations that cancel a trigger right before it ("没有着火", "未发现裂缝").
const NEGATIONS: &[&str] = &["没有", "没", "未", "无", "不是", "并非", "防止", "预防", "避免"];

#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    pub kind: SignalKind,
    pub label: &'static str,
    pub triggers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignalReport {
    pub flags: Vec<Signal>,
    /// Any flag: the ticket goes to the front of the queue and a supervisor is alerted.
    pub escalate: bool,
}

fn negated(text: &str, at: usize) -> bool {
    let before: String = text[..at].chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    NEGATIONS.iter().any(|n| before.ends_with(n) || before.trim_end_matches(['有', '发', '现']).ends_with(n))
}

pub fn detect(text: &str) -> SignalReport {
    let text = xiaoguan_text::normalize(text);
    let mut flags = Vec::new();
    for (kind, words) in LEXICON {
        let mut triggers = Vec::new();
        for w in *words {
            if text.match_indices(w).any(|(at, _)| !negated(&text, at)) {
                triggers.push(w.to_string());
            }
        }
        if !triggers.is_empty() {
            flags.push(Signal { kind: *kind, label: kind.label(), triggers });
        }
    }
    SignalReport { escalate: !flags.is_empty(), flags }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_with_triggers() {
        let r = detect("楼道里闻到煤气味，老人晕倒了，快来人");
        assert!(r.escalate);
        let kinds: Vec<SignalKind> = r.flags.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![SignalKind::LifeDanger, SignalKind::SafetyHazard]);
        assert!(r.flags[1].triggers.contains(&"煤气味".to_string()));
        assert!(detect("工资拖欠半年，我真的活不下去了").flags.iter().any(|f| f.kind == SignalKind::SelfHarm));
        assert!(detect("几十名工人在公司门口拉横幅讨薪").flags.iter().any(|f| f.kind == SignalKind::MassIncident));
    }

    #[test]
    fn ordinary_and_negated_tickets_are_not_flagged() {
        assert!(!detect("请问失业保险金怎么申领？").escalate);
        assert!(!detect("经检查没有着火，也未发现裂缝").escalate);
        assert!(!detect("建议小区加强宣传，预防火灾").escalate);
    }
}
