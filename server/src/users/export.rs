//! The audit log as CSV, for spreadsheets and other tools: every entry
//! that matches the filter, newest first, read from the database a page at
//! a time while the response streams.

use bytes::Bytes;
use futures::Stream;
use sqlx::PgPool;

use super::Users;
use super::model::AuditEntry;
use super::repo::{self, AuditFilter};

/// The columns, in order.
pub const HEADER: &str = "id,at,actor,action,target_id,target,outcome,request_id,details\r\n";

/// Entries read per database query.
const PAGE: i64 = 1000;
/// The most an export carries; more is a sign the filter is missing.
pub const MAX_ROWS: i64 = 100_000;

/// One CSV field (RFC 4180: always quoted, quotes doubled). A value that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, a tab or a
/// carriage return first) gets a leading `'`, as OWASP advises: audit text
/// comes partly from users (names, usernames).
fn field(out: &mut String, value: &str) {
    out.push('"');
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    out.push_str(&value.replace('"', "\"\""));
    out.push('"');
}

pub fn row(e: &AuditEntry) -> String {
    let at =
        e.at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
    let target_id = e.target_id.map(|t| t.to_string()).unwrap_or_default();
    let details = e.details.to_string();
    let cells = [
        e.id.to_string(),
        at,
        e.actor.clone(),
        e.action.clone(),
        target_id,
        e.target.clone().unwrap_or_default(),
        e.outcome.clone(),
        e.request_id.clone().unwrap_or_default(),
        details,
    ];
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, cell);
    }
    out.push_str("\r\n");
    out
}

/// The CSV body: the header, then each matching entry, up to
/// [`MAX_ROWS`]. A database failure half-way ends the body short (the
/// client sees a broken download rather than a truncated file passed off
/// as whole).
fn body(db: PgPool, filter: OwnedFilter) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let filter = std::sync::Arc::new(filter);
    let start = futures::stream::once(async { Ok(Bytes::from_static(HEADER.as_bytes())) });
    let pages = futures::stream::try_unfold(0i64, move |offset| {
        let db = db.clone();
        let filter = filter.clone();
        async move {
            if offset >= MAX_ROWS {
                return Ok(None);
            }
            let limit = PAGE.min(MAX_ROWS - offset);
            let (entries, _) = repo::list_audit(&db, &filter.borrowed(), limit, offset)
                .await
                .map_err(std::io::Error::other)?;
            if entries.is_empty() {
                return Ok(None);
            }
            let text: String = entries.iter().map(row).collect();
            Ok(Some((Bytes::from(text), offset + limit)))
        }
    });
    futures::StreamExt::chain(start, pages)
}

impl Users {
    /// The audit entries `filter` picks, as a CSV body.
    pub fn audit_csv(
        &self,
        filter: OwnedFilter,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + use<> {
        body(self.db.clone(), filter)
    }
}

/// An audit filter that the stream keeps between pages.
pub struct OwnedFilter {
    pub target_id: Option<uuid::Uuid>,
    pub action: Option<String>,
    pub actor: Option<String>,
}

impl OwnedFilter {
    fn borrowed(&self) -> AuditFilter<'_> {
        AuditFilter {
            target_id: self.target_id,
            action: self.action.as_deref(),
            actor: self.actor.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, target: Option<&str>, details: serde_json::Value) -> AuditEntry {
        AuditEntry {
            id: 7,
            at: time::macros::datetime!(2026-12-06 10:00 UTC),
            actor: actor.into(),
            action: "user.create".into(),
            target_id: None,
            target: target.map(str::to_string),
            outcome: "success".into(),
            request_id: Some("req-1".into()),
            details,
        }
    }

    #[test]
    fn fields_are_quoted_and_quotes_doubled() {
        let line = row(&entry(
            "alice (1)",
            Some("say \"hi\", bob"),
            serde_json::json!({"roles": ["user"]}),
        ));
        assert_eq!(
            line,
            "\"7\",\"2026-12-06T10:00:00Z\",\"alice (1)\",\"user.create\",\"\",\"say \"\"hi\"\", bob\",\"success\",\"req-1\",\"{\"\"roles\"\":[\"\"user\"\"]}\"\r\n"
        );
    }

    #[test]
    fn formulas_are_not_run_by_spreadsheets() {
        for evil in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx"] {
            let line = row(&entry("alice", Some(evil), serde_json::json!({})));
            assert!(
                line.contains(&format!(",\"'{}\",", evil.replace('"', "\"\""))),
                "{line}"
            );
        }
    }
}
