//! An agenda as its entries (borrowed from the rows they expand) and their JSON.

use chrono::{DateTime, Datelike, Utc};
use platform::http::chunks::{Chunked, ChunksBody};

#[cfg(test)]
use super::{Agenda, AgendaItem};
use crate::repository::AgendaRow;

/// One meeting, or one occurrence of a series, of an agenda row: what [`AgendaItem`] says,
/// borrowed from the row (a year of a series is dozens of entries of one row).
#[derive(Clone, Copy)]
pub(super) struct Entry<'r> {
    pub(super) row: &'r AgendaRow,
    /// Where `row` is in the rows expanded.
    pub(super) index: usize,
    pub(super) starts_at: DateTime<Utc>,
    pub(super) ends_at: DateTime<Utc>,
    pub(super) cancelled: bool,
    pub(super) response: Option<&'r str>,
    pub(super) occurrence: Option<DateTime<Utc>>,
}

/// The agenda's order of `entries` (their places in it): by start, then meeting id, then original start (unique:
/// an occurrence is named by its original start). Sorted as compact keys — the start in
/// whole seconds, its fraction beside the meeting id's rank among `rows` (the slice the
/// entries' `index` points into), and the entry's place — looking at the entries only when
/// two occurrences of one meeting start together: a year's agenda is ten thousand entries,
/// many of them starting at the same hour.
pub(super) fn sorted(rows: &[AgendaRow], entries: &[Entry<'_>]) -> Vec<u32> {
    let mut ids: Vec<(u128, usize)> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| (row.meeting_id.as_u128(), index))
        .collect();
    ids.sort_unstable();
    let mut rank = vec![0u32; rows.len()];
    let mut current = 0u32;
    for (i, (id, index)) in ids.iter().enumerate() {
        if i > 0 && ids[i - 1].0 != *id {
            current += 1;
        }
        rank[*index] = current;
    }
    let mut order: Vec<(i64, u64, u32)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let place = u32::try_from(i).expect("BUG: an agenda holds at most 20,000 entries");
            let fraction = u64::from(e.starts_at.timestamp_subsec_nanos());
            (
                e.starts_at.timestamp(),
                fraction << 32 | u64::from(rank[e.index]),
                place,
            )
        })
        .collect();
    order.sort_unstable_by(|a, b| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
            entries[a.2 as usize]
                .occurrence
                .cmp(&entries[b.2 as usize].occurrence)
        })
    });
    order.iter().map(|(_, _, i)| *i).collect()
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
/// them equal), written in chunks ([`Chunked`]) — a year of series is tens of thousands of
/// items, megabytes of JSON. What an item repeats of its row (id, title) is encoded once per
/// row; times are written by [`Times`]. `rows` is the slice the entries' `index` points into.
pub(super) fn agenda_json<'a, 'r: 'a>(
    rows: &[AgendaRow],
    entries: impl IntoIterator<Item = &'a Entry<'r>>,
) -> ChunksBody {
    fn string(out: &mut Vec<u8>, text: &str) {
        if text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        } else {
            serde_json::to_writer(&mut *out, text).expect("BUG: a string encodes");
        }
    }
    // Per row: `{"meeting_id":"…","starts_at":` and `,"title":…,"status":`.
    let mut encoded: Vec<Option<(Vec<u8>, Vec<u8>)>> = vec![None; rows.len()];
    let mut times = Times::default();
    let mut chunks = Chunked::new();
    chunks.buffer.extend_from_slice(b"{\"items\":[");
    for (i, entry) in entries.into_iter().enumerate() {
        chunks.cut();
        let out = &mut chunks.buffer;
        if i > 0 {
            out.push(b',');
        }
        let row = entry.row;
        let (head, title) = encoded[entry.index].get_or_insert_with(|| {
            let head = format!("{{\"meeting_id\":\"{}\",\"starts_at\":", row.meeting_id);
            let mut title = b",\"title\":".to_vec();
            serde_json::to_writer(&mut title, &row.title).expect("BUG: a string encodes");
            title.extend_from_slice(b",\"status\":");
            (head.into_bytes(), title)
        });
        out.extend_from_slice(head);
        times.write(out, &entry.starts_at);
        out.extend_from_slice(b",\"ends_at\":");
        times.write(out, &entry.ends_at);
        out.extend_from_slice(title);
        string(out, entry.status());
        out.extend_from_slice(b",\"my_response\":");
        match entry.response {
            Some(response) => string(out, response),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(if row.is_organizer {
            b",\"is_organizer\":true"
        } else {
            b",\"is_organizer\":false"
        });
        if let Some(occurrence) = &entry.occurrence {
            out.extend_from_slice(b",\"occurrence\":");
            times.write(out, occurrence);
        }
        out.push(b'}');
    }
    chunks.buffer.extend_from_slice(b"]}");
    chunks.finish()
}

/// Writes UTC times as JSON strings exactly as chrono's serde does (`"2027-01-04T08:00:00Z"`,
/// a fraction only when there is one), remembering the date last written: an agenda is sorted
/// by time, so its items' times mostly share their day with the one before.
#[derive(Default)]
struct Times {
    /// Days since 1970-01-01 and `YYYY-MM-DDT` of the date last written.
    last: Option<(i64, [u8; 11])>,
}

impl Times {
    fn write(&mut self, out: &mut Vec<u8>, at: &DateTime<Utc>) {
        let seconds = at.timestamp();
        let day = seconds.div_euclid(86_400);
        let date = match self.last {
            Some((last, date)) if last == day => Some(date),
            _ => Self::date(at),
        };
        let Some(date) = date.filter(|_| at.timestamp_subsec_nanos() == 0) else {
            // A fraction, or a year beyond four digits: chrono's own form.
            serde_json::to_writer(&mut *out, at).expect("BUG: a time encodes");
            return;
        };
        self.last = Some((day, date));
        let of_day = seconds.rem_euclid(86_400) as u32;
        let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        out.push(b'"');
        out.extend_from_slice(&date);
        for (i, value) in [hour, minute, second].into_iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            out.extend_from_slice(&[b'0' + (value / 10) as u8, b'0' + (value % 10) as u8]);
        }
        out.extend_from_slice(b"Z\"");
    }

    /// `YYYY-MM-DDT` of `at`'s date, for the years 0–9999.
    fn date(at: &DateTime<Utc>) -> Option<[u8; 11]> {
        let date = at.date_naive();
        let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
        let mut text = *b"0000-00-00T";
        for (at, value, width) in [(0, year, 4), (5, date.month(), 2), (8, date.day(), 2)] {
            let mut value = value;
            for i in (0..width).rev() {
                text[at + i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::AgendaRow as Row;
    use uuid::Uuid;

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
        let rows = [
            row(7, "Zoë's \"sync\"\n\\ — weekly", "scheduled", false),
            row(8, "Single", "in_progress", true),
        ];
        let (series, single) = (&rows[0], &rows[1]);
        let mut entries = vec![
            Entry {
                row: series,
                index: 0,
                starts_at: at("2027-03-01T08:00:00Z"),
                ends_at: at("2027-03-01T09:00:00Z"),
                cancelled: false,
                response: Some("needs_action"),
                occurrence: Some(at("2027-03-01T08:00:00Z")),
            },
            Entry {
                row: series,
                index: 0,
                starts_at: at("2027-03-08T08:00:00.250Z"),
                ends_at: at("2027-03-08T09:00:00Z"),
                cancelled: true,
                response: Some("odd \"value\""),
                occurrence: Some(at("2027-03-08T08:00:00Z")),
            },
            Entry {
                row: single,
                index: 1,
                starts_at: single.starts_at,
                ends_at: single.ends_at,
                cancelled: false,
                response: None,
                occurrence: None,
            },
        ];
        // Times the remembered date must not leak into: across midnight and years, before
        // 1970, a fraction on a remembered day, years beyond four digits.
        let times = [
            "2027-12-31T23:59:59Z",
            "2028-01-01T00:00:00Z",
            "2028-01-01T00:00:00.000001Z",
            "2028-02-29T12:00:00Z",
            "1969-12-31T23:59:59Z",
            "1900-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ];
        for pair in times.windows(2) {
            entries.push(Entry {
                row: single,
                index: 1,
                starts_at: at(pair[0]),
                ends_at: at(pair[1]),
                cancelled: false,
                response: None,
                occurrence: Some(at(pair[1])),
            });
        }
        let far = DateTime::<Utc>::MAX_UTC;
        entries.push(Entry {
            row: single,
            index: 1,
            starts_at: DateTime::<Utc>::MIN_UTC,
            ends_at: far,
            cancelled: false,
            response: None,
            occurrence: Some(far),
        });
        // Enough of them to fill several chunks of the body.
        let entries = entries.repeat(300);
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
        let body = agenda_json(&rows, &entries);
        assert!(body.len() > 4 * 65_536, "{}", body.len());
        assert_eq!(
            String::from_utf8(body.to_vec()).unwrap(),
            serde_json::to_string(&Agenda { items }).unwrap()
        );
        assert_eq!(agenda_json(&rows, &[]).to_vec(), br#"{"items":[]}"#);
    }
}

#[cfg(test)]
mod order {
    use super::*;
    use crate::repository::AgendaRow;
    use uuid::Uuid;

    #[test]
    fn entries_are_sorted_by_start_then_meeting_then_original_start() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let rows: Vec<AgendaRow> = [3u128, 1, 2]
            .into_iter()
            .map(|id| AgendaRow {
                user_id: Uuid::from_u128(9),
                meeting_id: Uuid::from_u128(id),
                starts_at: at("2027-01-01T00:00:00Z"),
                ends_at: at("2027-01-01T01:00:00Z"),
                title: "t".into(),
                status: "scheduled".into(),
                my_response: None,
                is_organizer: true,
                series: None,
            })
            .collect();
        // Ties on the start (several meetings, several occurrences of one moved to the same
        // time), fractions of a second, and times before 1970.
        let starts = [
            ("2027-01-04T09:00:00Z", Some("2027-01-11T09:00:00Z")),
            ("2027-01-04T09:00:00Z", Some("2027-01-04T09:00:00Z")),
            ("2027-01-04T09:00:00Z", None),
            ("2027-01-04T09:00:00.5Z", None),
            ("2027-01-04T08:59:59.999Z", None),
            ("1969-12-31T23:59:59.5Z", None),
            ("1969-12-31T23:59:59Z", Some("1969-12-31T23:59:59Z")),
        ];
        let mut entries = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            for (start, occurrence) in starts {
                entries.push(Entry {
                    row,
                    index,
                    starts_at: at(start),
                    ends_at: at(start),
                    cancelled: false,
                    response: None,
                    occurrence: occurrence.map(at),
                });
            }
        }
        let key = |e: &Entry<'_>| (e.starts_at, e.row.meeting_id, e.occurrence);
        let mut expected: Vec<_> = entries.iter().map(key).collect();
        expected.sort();
        let got: Vec<_> = sorted(&rows, &entries)
            .iter()
            .map(|i| key(&entries[*i as usize]))
            .collect();
        assert_eq!(got, expected);
    }
}
