//! An aggregate as it was at a point in time, rebuilt through the domain's own `apply` and
//! upcasters — the same code the command side decides with — and the difference between two
//! such states.

use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use platform::store::{apply_stored, AggregateState, EventStore, Position, StoreError};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{Kind, Point};

/// What `meetings events state` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateAt {
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// The point asked for.
    pub at: String,
    /// Events applied (0: the aggregate did not exist yet).
    pub version: i64,
    /// Position and time of the last event applied.
    pub position: Option<Position>,
    pub recorded_at: Option<DateTime<Utc>>,
    /// The aggregate's fields, as the domain holds them.
    pub state: Value,
}

/// Events read per page while rebuilding: bounded memory for any length of history.
const PAGE: i64 = 1000;

/// `id` rebuilt from its events up to `at` (time: recorded at or before it; position: at or
/// before it).
pub async fn state_at(
    store: &dyn EventStore,
    kind: Kind,
    id: Uuid,
    at: Point,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<StateAt, StoreError> {
    let (version, position, recorded_at, state) = match kind {
        Kind::Meeting => rebuild::<domain::Meeting>(store, kind, id, at, upcasters).await?,
        Kind::User => rebuild::<domain::User>(store, kind, id, at, upcasters).await?,
    };
    Ok(StateAt {
        aggregate_type: kind.as_str().to_string(),
        aggregate_id: id,
        at: at.to_string(),
        version,
        position,
        recorded_at,
        state,
    })
}

type Rebuilt = (i64, Option<Position>, Option<DateTime<Utc>>, Value);

async fn rebuild<A: Aggregate + Serialize>(
    store: &dyn EventStore,
    kind: Kind,
    id: Uuid,
    at: Point,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<Rebuilt, StoreError> {
    let mut state = AggregateState::<A>::default();
    let (mut position, mut recorded_at) = (None, None);
    loop {
        let page = store
            .load_page(kind.as_str(), id, state.version, PAGE)
            .await?;
        let full = page.len() as i64 == PAGE;
        let included: Vec<_> = page.into_iter().take_while(|e| at.includes(e)).collect();
        let stopped = !full || (included.len() as i64) < PAGE;
        if let Some(last) = included.last() {
            position = Some(last.position);
            recorded_at = Some(last.recorded_at);
        }
        apply_stored(&mut state, included, upcasters)?;
        if stopped {
            break;
        }
    }
    let value = serde_json::to_value(&state.aggregate)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("cannot show the state: {e}")))?;
    Ok((state.version, position, recorded_at, value))
}

/// One difference between two states: the JSON path and the values before and after
/// (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Field-by-field differences from `a` to `b`; objects are compared key by key, arrays
/// element by element.
pub fn diff(a: &Value, b: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk("", Some(a), Some(b), &mut changes);
    changes
}

fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Change>) {
    match (a, b) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                walk(&format!("{path}.{key}"), a.get(key), b.get(key), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a != b => out.push(Change {
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            before: a.cloned(),
            after: b.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_each_changed_added_and_removed_field() {
        let a = json!({"title": "A", "attendees": [{"r": "x"}], "gone": 1, "same": true});
        let b = json!({"title": "B", "attendees": [{"r": "y"}, {"r": "z"}], "same": true});
        let changes = diff(&a, &b);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [".attendees[0].r", ".attendees[1]", ".gone", ".title"]
        );
        assert_eq!(changes[2].after, None);
        assert_eq!(changes[3].before, Some(json!("A")));
        assert!(diff(&a, &a).is_empty());
    }
}
