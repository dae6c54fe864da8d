//! Loading what a batch touches: the last applied sequence of each of its aggregates and the
//! stored rows the fold starts from.

use std::collections::HashMap;

use platform::bus::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::fold::{Fold, Touched};

/// The last applied sequence of each aggregate, keyed by (aggregate type, id).
pub type Sequences = HashMap<(String, Uuid), i64>;

/// Loads the last applied sequences of the batch's aggregates and the stored rows of what it
/// touches: its users and its meetings (with their attendees), and the display names of all
/// their people — in **one** statement, rows as JSON so the five kinds fit one result.
pub async fn load(
    conn: &mut PgConnection,
    projection: &str,
    events: &[EventEnvelope],
    touched: &Touched,
) -> Result<(Sequences, Fold), sqlx::Error> {
    // Each aggregate once, however many of the batch's events it has.
    let mut seen = std::collections::HashSet::new();
    let (types, ids): (Vec<&str>, Vec<Uuid>) = events
        .iter()
        .map(|e| (e.aggregate_type.as_str(), e.aggregate_id))
        .filter(|key| seen.insert(*key))
        .unzip();
    // The meetings of renamed users are not loaded here: there may be very many, and their
    // documents are re-rendered after the write, in chunks ([`meetings_of`]).
    let meetings = &touched.meetings;
    // Lookups by key, each one a parameterized index scan whatever the tables' statistics
    // were when the plan was cached (`LIMIT 1` keeps the planner from flattening a lookup
    // into a join over the whole table; see also `crate::projection::lead`).
    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT 's', json_build_array(k.t, k.id, s.last_sequence) \
         FROM unnest($2::text[], $3::uuid[]) AS k(t, id) \
         JOIN LATERAL (SELECT last_sequence FROM projection_sequences \
                       WHERE projection = $1 AND aggregate_type = k.t AND aggregate_id = k.id \
                       LIMIT 1) s \
           ON true \
         UNION ALL SELECT 'u', row_to_json(u) FROM rm_users u WHERE u.id = ANY($4) \
         UNION ALL SELECT 'm', row_to_json(m) FROM rm_meetings m WHERE m.id = ANY($5) \
         UNION ALL SELECT 'a', row_to_json(a) FROM rm_meeting_attendees a \
                   WHERE a.meeting_id = ANY($5) \
         UNION ALL SELECT 'n', json_build_array(u.id, u.display_name) \
         FROM (SELECT organizer_id AS id FROM rm_meetings WHERE id = ANY($5) \
               UNION SELECT user_id FROM rm_meeting_attendees WHERE meeting_id = ANY($5) \
               UNION SELECT unnest($6::uuid[])) p \
         JOIN LATERAL (SELECT id, display_name FROM rm_users WHERE id = p.id LIMIT 1) u ON true",
    )
    .bind(projection)
    .bind(&types)
    .bind(&ids)
    .bind(&touched.users)
    .bind(meetings)
    .bind(&touched.people)
    .fetch_all(&mut *conn)
    .await?;
    let mut sequences = Sequences::new();
    let (mut users, mut meetings, mut attendees) = (Vec::new(), Vec::new(), Vec::new());
    let mut names = HashMap::new();
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    for (kind, row) in rows {
        match kind.as_str() {
            "s" => {
                let (aggregate_type, aggregate_id, sequence): (String, Uuid, i64) =
                    serde_json::from_value(row).map_err(decode)?;
                sequences.insert((aggregate_type, aggregate_id), sequence);
            }
            "u" => users.push(serde_json::from_value(row).map_err(decode)?),
            "m" => meetings.push(serde_json::from_value(row).map_err(decode)?),
            "a" => attendees.push(serde_json::from_value(row).map_err(decode)?),
            _ => {
                let (id, name): (Uuid, String) = serde_json::from_value(row).map_err(decode)?;
                names.insert(id, name);
            }
        }
    }
    Ok((
        sequences,
        Fold::new(users, meetings, attendees).with_names(names),
    ))
}

/// Up to `limit` meetings (ids after `after`, in id order) that `users` organize or attend:
/// one chunk of the documents a rename re-renders.
pub async fn meetings_of(
    conn: &mut PgConnection,
    users: &[Uuid],
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM (SELECT id FROM rm_meetings WHERE organizer_id = ANY($1) \
                         UNION SELECT meeting_id FROM rm_meeting_attendees WHERE user_id = ANY($1)) m \
         WHERE id > $2 ORDER BY id LIMIT $3",
    )
    .bind(users)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}
