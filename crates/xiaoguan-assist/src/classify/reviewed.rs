//! The labelling loop's training rows: tickets a reviewer confirmed in the ticket store become
//! examples for the head that learns that field (classifiers.toml `review_field`).

use super::Example;
use xiaoguan_tickets::{Review, TicketRecord};

/// The review's label for a field: request_type | domain | category | unit.
pub fn review_label<'a>(r: &'a Review, field: &str) -> Option<&'a str> {
    match field {
        "request_type" => r.request_type.as_deref(),
        "domain" => r.domain.as_deref(),
        "category" => r.category.as_deref(),
        "unit" => r.unit.as_deref(),
        _ => None,
    }
    .map(str::trim)
    .filter(|l| !l.is_empty())
}

/// The request-type head learns the dev data's three classes; reviewers confirm the product's
/// 诉求类型 (投诉 / 举报 / 求助 / 建议 / 咨询 / 表扬), mapped back here. 表扬 has no class there.
fn request_type_class(label: &str) -> Option<&'static str> {
    match label {
        "建议" | "建言" => Some("建言"),
        "投诉" | "举报" | "求助" | "投诉/求助" => Some("投诉/求助"),
        "咨询" => Some("咨询"),
        _ => None,
    }
}

/// Examples from reviewed tickets: text as the head sees it (title。text), the reviewer's
/// label for `field` passed through the head's `label_map` (aliases), id `ticket-<id>`.
pub fn reviewed_examples(rows: &[TicketRecord], field: &str, label_map: &dyn Fn(&str) -> Option<String>) -> Vec<Example> {
    rows.iter()
        .filter_map(|t| {
            let label = review_label(t.review.as_ref()?, field)?;
            let label = if field == "request_type" { request_type_class(label)?.to_string() } else { label.to_string() };
            let label = label_map(&label)?;
            let text = match t.ticket.title.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(title) => format!("{title}。{}", t.ticket.text),
                None => t.ticket.text.clone(),
            };
            Some(Example { id: format!("ticket-{}", t.id), text, label })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xiaoguan_tickets::NewTicket;

    fn reviewed(id: i64, title: Option<&str>, r: Review) -> TicketRecord {
        TicketRecord { id, ticket: NewTicket { text: "楼道燃气泄漏".into(), title: title.map(String::from), ..Default::default() }, decision: None, review: Some(r) }
    }

    #[test]
    fn reviewed_rows_become_examples_of_the_field_they_confirm() {
        let r = |rt: Option<&str>, unit: Option<&str>| Review { reviewer: "r".into(), at_ms: 0, request_type: rt.map(String::from), domain: None, category: None, unit: unit.map(String::from), note: None };
        let rows = vec![
            reviewed(1, Some("燃气"), r(Some("举报"), Some("市城市管理和综合执法局"))),
            reviewed(2, None, r(Some("表扬"), None)),
            TicketRecord { id: 3, ticket: NewTicket::default(), decision: None, review: None },
        ];
        let id = |l: &str| Some(l.to_string());
        let rt = reviewed_examples(&rows, "request_type", &id);
        assert_eq!(rt.len(), 1, "表扬 has no class in the head; unreviewed rows are not training rows");
        assert_eq!((rt[0].id.as_str(), rt[0].label.as_str(), rt[0].text.as_str()), ("ticket-1", "投诉/求助", "燃气。楼道燃气泄漏"));
        let units = reviewed_examples(&rows, "unit", &|l: &str| Some(format!("canon:{l}")));
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].label, "canon:市城市管理和综合执法局", "labels go through the head's aliases");
        assert!(reviewed_examples(&rows, "domain", &id).is_empty());
    }
}
