//! An agenda as its entries (borrowed from the rows they expand) and their JSON.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[cfg(test)]
use super::{Agenda, AgendaItem};
use crate::repository::AgendaRow;

/// One meeting, or one occurrence of a series, of an agenda row: what [`AgendaItem`] says,
/// borrowed from the row (a year of a series is dozens of entries of one row).
pub(super) struct Entry<'r> {
    pub(super) row: &'r AgendaRow,
    pub(super) starts_at: DateTime<Utc>,
    pub(super) ends_at: DateTime<Utc>,
    pub(super) cancelled: bool,
    pub(super) response: Option<&'r str>,
    pub(super) occurrence: Option<DateTime<Utc>>,
}

impl Entry<'_> {
    pub(super) fn status(&self) -> &str {
        if self.cancelled {
            "cancelled"
        } else {
            &self.row.status
        }
    }
}

/// The [`Agenda`] of `entries` as JSON: the bytes `serde_json` writes for it (a test holds
/// them equal), written into one buffer with each meeting's id and title encoded once for all
/// its occurrences — a year of series is tens of thousands of items, megabytes of JSON.
pub(super) fn agenda_json(entries: &[Entry<'_>]) -> String {
    fn string(out: &mut String, text: &str) {
        if text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            out.push('"');
            out.push_str(text);
            out.push('"');
        } else {
            out.push_str(&serde_json::to_string(text).expect("BUG: a string encodes"));
        }
    }
    fn time(out: &mut String, at: &DateTime<Utc>) {
        match platform::views::rfc3339_utc(at) {
            Some(text) => {
                out.push('"');
                out.push_str(std::str::from_utf8(&text).expect("BUG: ASCII digits"));
                out.push('"');
            }
            None => out.push_str(&serde_json::to_string(at).expect("BUG: a time encodes")),
        }
    }
    let mut encoded: HashMap<Uuid, (String, String)> = HashMap::new();
    let mut out = String::with_capacity(16 + entries.len() * 300);
    out.push_str("{\"items\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let row = entry.row;
        let (id, title) = encoded.entry(row.meeting_id).or_insert_with(|| {
            let title = serde_json::to_string(&row.title).expect("BUG: a string encodes");
            (row.meeting_id.to_string(), title)
        });
        out.push_str("{\"meeting_id\":\"");
        out.push_str(id);
        out.push_str("\",\"starts_at\":");
        time(&mut out, &entry.starts_at);
        out.push_str(",\"ends_at\":");
        time(&mut out, &entry.ends_at);
        out.push_str(",\"title\":");
        out.push_str(title);
        out.push_str(",\"status\":");
        string(&mut out, entry.status());
        out.push_str(",\"my_response\":");
        match entry.response {
            Some(response) => string(&mut out, response),
            None => out.push_str("null"),
        }
        out.push_str(if row.is_organizer {
            ",\"is_organizer\":true"
        } else {
            ",\"is_organizer\":false"
        });
        if let Some(occurrence) = &entry.occurrence {
            out.push_str(",\"occurrence\":");
            time(&mut out, occurrence);
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::AgendaRow as Row;

    #[test]
    fn the_agenda_json_is_what_serde_writes() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let row = |id: u128, title: &str, status: &str, organizer: bool| Row {
            user_id: Uuid::from_u128(1),
            meeting_id: Uuid::from_u128(id),
            starts_at: at("2027-03-01T08:00:00Z"),
            ends_at: at("2027-03-01T09:00:00Z"),
            title: title.into(),
            status: status.into(),
            my_response: (!organizer).then(|| "needs_action".to_owned()),
            is_organizer: organizer,
            series: None,
        };
        let series = row(7, "Zoë's \"sync\"\n\\ — weekly", "scheduled", false);
        let single = row(8, "Single", "in_progress", true);
        let entries = [
            Entry {
                row: &series,
                starts_at: at("2027-03-01T08:00:00Z"),
                ends_at: at("2027-03-01T09:00:00Z"),
                cancelled: false,
                response: Some("needs_action"),
                occurrence: Some(at("2027-03-01T08:00:00Z")),
            },
            Entry {
                row: &series,
                starts_at: at("2027-03-08T08:00:00.250Z"),
                ends_at: at("2027-03-08T09:00:00Z"),
                cancelled: true,
                response: Some("odd \"value\""),
                occurrence: Some(at("2027-03-08T08:00:00Z")),
            },
            Entry {
                row: &single,
                starts_at: single.starts_at,
                ends_at: single.ends_at,
                cancelled: false,
                response: None,
                occurrence: None,
            },
        ];
        let items: Vec<AgendaItem> = entries
            .iter()
            .map(|e| AgendaItem {
                meeting_id: e.row.meeting_id,
                starts_at: e.starts_at,
                ends_at: e.ends_at,
                title: e.row.title.clone(),
                status: e.status().to_owned(),
                my_response: e.response.map(str::to_owned),
                is_organizer: e.row.is_organizer,
                occurrence: e.occurrence,
            })
            .collect();
        assert_eq!(
            agenda_json(&entries),
            serde_json::to_string(&Agenda { items }).unwrap()
        );
        assert_eq!(agenda_json(&[]), r#"{"items":[]}"#);
    }
}
