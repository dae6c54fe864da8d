//! The read-model store's seam: what applying a batch asks of the database, implemented once
//! per backend — PostgreSQL ([`crate::sql`], one statement to load and one to write) and the
//! SQLite file of embedded mode ([`crate::sqlite`]). The fold, the de-duplication and the
//! order of work ([`crate::apply`]) are shared.

use async_trait::async_trait;
use platform::bus::EventEnvelope;
use sqlx::{PgConnection, SqliteConnection};
use uuid::Uuid;

use crate::fold::{Fold, Touched};
use crate::sql::{Batch, Sequences};

/// A connection to the read models.
#[async_trait]
pub trait ReadModelConnection: sqlx::Connection {
    /// Whether [`ReadModelConnection::write`] is atomic by itself (one statement); if not,
    /// a batch is applied inside a transaction.
    const ATOMIC_WRITE: bool;

    /// The last applied sequence of each of `events`' aggregates and the stored rows of what
    /// they touch, as the fold starts from them.
    async fn load(
        &mut self,
        projection: &str,
        events: &[EventEnvelope],
        touched: &Touched,
    ) -> Result<(Sequences, Fold), sqlx::Error>;

    /// Writes the rows, sequences and checkpoint of `batch`; answers the checkpoint.
    async fn write(&mut self, batch: &Batch) -> Result<String, sqlx::Error>;

    /// Up to `limit` meetings (ids after `after`, in id order) that `users` organize or
    /// attend.
    async fn meetings_of(
        &mut self,
        users: &[Uuid],
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<Uuid>, sqlx::Error>;

    /// Renders the documents of `meetings` from the stored rows and writes them.
    async fn refresh_documents(&mut self, meetings: &[Uuid]) -> Result<usize, sqlx::Error>;
}

#[async_trait]
impl ReadModelConnection for PgConnection {
    const ATOMIC_WRITE: bool = true;

    async fn load(
        &mut self,
        projection: &str,
        events: &[EventEnvelope],
        touched: &Touched,
    ) -> Result<(Sequences, Fold), sqlx::Error> {
        crate::sql::load(self, projection, events, touched).await
    }

    async fn write(&mut self, batch: &Batch) -> Result<String, sqlx::Error> {
        crate::sql::write(self, batch).await
    }

    async fn meetings_of(
        &mut self,
        users: &[Uuid],
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        crate::sql::meetings_of(self, users, after, limit).await
    }

    async fn refresh_documents(&mut self, meetings: &[Uuid]) -> Result<usize, sqlx::Error> {
        crate::sql::documents::refresh(self, meetings).await
    }
}

#[async_trait]
impl ReadModelConnection for SqliteConnection {
    const ATOMIC_WRITE: bool = false;

    async fn load(
        &mut self,
        projection: &str,
        events: &[EventEnvelope],
        touched: &Touched,
    ) -> Result<(Sequences, Fold), sqlx::Error> {
        crate::sqlite::load(self, projection, events, touched).await
    }

    async fn write(&mut self, batch: &Batch) -> Result<String, sqlx::Error> {
        crate::sqlite::write(self, batch).await
    }

    async fn meetings_of(
        &mut self,
        users: &[Uuid],
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        crate::sqlite::meetings_of(self, users, after, limit).await
    }

    async fn refresh_documents(&mut self, meetings: &[Uuid]) -> Result<usize, sqlx::Error> {
        crate::sqlite::refresh_documents(self, meetings).await
    }
}
