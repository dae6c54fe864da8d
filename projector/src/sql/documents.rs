//! Writing meeting documents (`rm_meeting_documents`, rendered by [`crate::render`]).
//!
//! Batches write the documents of the meetings they change in the same statement as the rows
//! (`sql::write`), through [`COLUMNS`], [`UPSERT`] and [`bind`]. [`refresh`] renders documents
//! from the stored rows instead: a batch that renames a user uses it, in chunks and in the
//! batch's transaction, for every meeting of that user (`apply`); a new leader uses it to
//! complete documents missing from a database migrated before they existed ([`backfill`]);
//! tests and seeds use it after writing rows by SQL. It loads rows the
//! way a batch does ([`load`]), so both see the same rows and names.

use std::sync::LazyLock;

use sqlx::error::BoxDynError;
use sqlx::PgConnection;
use uuid::Uuid;

use super::load::load;
use super::statement::{uuid_array_literal, Binder, Param, Part, Statement};
use crate::fold::Touched;
use crate::render::Document;

/// The columns of a batch of documents (members as `uuid[]` literals, bodies as JSON text).
pub(crate) const COLUMNS: &[Param] = &[
    ("id", "uuid"),
    ("members", "text"),
    ("version", "bigint"),
    ("body", "text"),
];

/// Inserts or overwrites the documents of [`COLUMNS`].
pub(crate) const UPSERT: &str = "\
    INSERT INTO rm_meeting_documents (meeting_id, members, version, body) \
    SELECT id, members::uuid[], version, body::json FROM {rows} \
    ON CONFLICT (meeting_id) DO UPDATE SET members = EXCLUDED.members, \
       version = EXCLUDED.version, body = EXCLUDED.body";

/// Binds `documents` as [`COLUMNS`].
pub(crate) fn bind(documents: &[Document], binder: &mut Binder) -> Result<(), BoxDynError> {
    binder.column(documents, |d| d.meeting_id)?;
    binder.column(documents, |d| uuid_array_literal(&d.members))?;
    binder.column(documents, |d| d.version)?;
    binder.column(documents, |d| d.body.as_str())
}

static DOCUMENTS: Part<[Document]> = Part {
    name: "documents",
    sql: UPSERT,
    columns: COLUMNS,
    scalars: &[],
    bind,
};

static REFRESH: LazyLock<Statement<[Document]>> = LazyLock::new(|| Statement::new(&[], &DOCUMENTS));

/// Renders the documents of `meetings` from the stored rows and writes them; answers how many
/// it wrote (unknown ids are skipped). For rows written by other means than a batch: a
/// migrated database ([`backfill`]), tests and seeds.
pub async fn refresh(conn: &mut PgConnection, meetings: &[Uuid]) -> Result<usize, sqlx::Error> {
    // The rows and names as a batch loads them, with no events to fold.
    let touched = Touched {
        meetings: meetings.to_vec(),
        ..Touched::default()
    };
    let (_, fold) = load(&mut *conn, platform::projection::READ_MODELS, &[], &touched).await?;
    let documents = fold.documents();
    if documents.is_empty() {
        return Ok(0);
    }
    let arguments = REFRESH
        .arguments(documents.as_slice())
        .map_err(sqlx::Error::Encode)?;
    let written = sqlx::query_with(REFRESH.sql(), arguments)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(usize::try_from(written).unwrap_or(0))
}

/// Renders every meeting that has no document yet, in chunks; answers how many. Cheap when
/// nothing is missing (one anti-join), which is the usual case.
pub async fn backfill(conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
    const CHUNK: i64 = 2_000;
    let mut total = 0;
    loop {
        let missing: Vec<Uuid> = sqlx::query_scalar(
            "SELECT m.id FROM rm_meetings m WHERE NOT EXISTS \
               (SELECT 1 FROM rm_meeting_documents d WHERE d.meeting_id = m.id) \
             ORDER BY m.id LIMIT $1",
        )
        .bind(CHUNK)
        .fetch_all(&mut *conn)
        .await?;
        if missing.is_empty() {
            return Ok(total);
        }
        total += refresh(conn, &missing).await?;
    }
}
