//! Global anchors: a running hash over the whole log in global order, checkpointed into
//! `event_anchors` (see the migration and `docs/adr/0010-audit-anchors.md`).
//!
//! `chain(n) = SHA-256(chain(n-1) ‖ position(n) ‖ hash(n))`, starting from [`genesis`].
//! Each event's own hash already covers its content and its aggregate predecessor, so the
//! running hash commits to every event, to their global order, and to their number: deleting
//! a whole aggregate or the newest events changes it even though every per-aggregate chain
//! stays intact.
//!
//! One anchor task per database writes them (a PostgreSQL advisory lock, like the relay;
//! in embedded mode the one process, which holds its files' lock), following the store
//! exactly as the relay does: only below the oldest running transaction, so an anchored
//! position never gains an earlier event later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use platform::db::sqlite::{micros, SqliteFile};
use platform::store::tail::StoreTail;
use platform::store::{EventStore, Position};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

/// An anchor every this many events…
pub const EVERY: i64 = 1000;
/// …and at most this long after the newest event, so that little of the tail is ever
/// unanchored.
pub const WITHIN: Duration = Duration::from_secs(10);
/// Pause between two reads of the store while caught up.
const POLL: Duration = Duration::from_millis(250);

/// The running hash before the first event.
pub fn genesis() -> [u8; 32] {
    Sha256::digest(b"meetings event log anchor v1").into()
}

/// The running hash after one more event.
pub fn link(chain: &[u8; 32], position: Position, hash: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(chain);
    hasher.update(position.transaction_id.to_be_bytes());
    hasher.update(position.id.to_be_bytes());
    hasher.update(hash);
    hasher.finalize().into()
}

/// A checkpoint of the running hash at the event at `position`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub position: Position,
    /// Events up to and including `position`, in global order.
    pub events: i64,
    pub chain: [u8; 32],
    /// As stored: the signing key's id and the signature, when the anchor was signed.
    pub signature: Option<(String, Vec<u8>)>,
}

impl Anchor {
    /// The state before the first event.
    pub fn start() -> Self {
        Self {
            position: Position::START,
            events: 0,
            chain: genesis(),
            signature: None,
        }
    }

    /// Moves past one more event.
    pub fn extend(&mut self, position: Position, hash: &[u8]) {
        self.signature = None;
        self.chain = link(&self.chain, position, hash);
        self.position = position;
        self.events += 1;
    }

    /// What a signature covers: a fixed label, the position, the count and the chain.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = b"meetings event log anchor v1".to_vec();
        bytes.extend_from_slice(&self.position.transaction_id.to_be_bytes());
        bytes.extend_from_slice(&self.position.id.to_be_bytes());
        bytes.extend_from_slice(&self.events.to_be_bytes());
        bytes.extend_from_slice(&self.chain);
        bytes
    }
}

/// Signs anchors with an Ed25519 private key kept outside the database.
pub struct AnchorSigner {
    pair: ring::signature::Ed25519KeyPair,
    key_id: String,
}

impl AnchorSigner {
    /// From a PEM `PRIVATE KEY` (PKCS#8), as `openssl genpkey -algorithm ed25519` writes it.
    pub fn from_pem(text: &str) -> anyhow::Result<Self> {
        let pem = pem::parse(text.trim()).map_err(|e| anyhow::anyhow!("not a PEM key: {e}"))?;
        anyhow::ensure!(
            pem.tag() == "PRIVATE KEY",
            "the anchor key must be an Ed25519 PRIVATE KEY (PKCS#8)"
        );
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pem.contents())
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 private key: {e}"))?;
        let public: [u8; 32] = ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .try_into()
            .map_err(|_| anyhow::anyhow!("an Ed25519 public key has 32 bytes"))?;
        Ok(Self {
            pair,
            key_id: platform::auth::keys::ed25519_kid(&public),
        })
    }

    /// The key id and signature of `anchor`.
    pub fn sign(&self, anchor: &Anchor) -> (String, Vec<u8>) {
        let signature = self.pair.sign(&anchor.signed_bytes());
        (self.key_id.clone(), signature.as_ref().to_vec())
    }
}

/// Checks anchor signatures against one public key.
pub struct AnchorVerifier {
    public: [u8; 32],
    key_id: String,
}

impl AnchorVerifier {
    /// From the PEM of the signing key, public (SPKI) or private.
    pub fn from_pem(text: &str) -> anyhow::Result<Self> {
        let public = platform::auth::keys::ed25519_public(text)?;
        Ok(Self {
            key_id: platform::auth::keys::ed25519_kid(&public),
            public,
        })
    }

    /// `None` when `anchor` carries a valid signature of this key, else why not.
    pub fn problem(&self, anchor: &Anchor) -> Option<String> {
        let Some((key_id, signature)) = &anchor.signature else {
            return Some("the anchor is not signed".into());
        };
        if *key_id != self.key_id {
            return Some(format!(
                "the anchor is signed by key {key_id}, not by the given key {}",
                self.key_id
            ));
        }
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, self.public);
        match key.verify(&anchor.signed_bytes(), signature) {
            Ok(()) => None,
            Err(_) => Some("the anchor's signature does not match its content".into()),
        }
    }
}

/// The anchor settings of the process that writes anchors (the command side).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AuditSettings {
    /// Ed25519 private key (PEM, PKCS#8) that signs the event log's anchors; keep it where
    /// the database's administrators cannot read it. Unset: anchors are not signed.
    #[arg(long = "audit-key-file", env = "MEETINGS_AUDIT_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,
}

impl AuditSettings {
    /// The signer of the key file, if one is configured.
    pub fn signer(&self) -> anyhow::Result<Option<Arc<AnchorSigner>>> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "MEETINGS_AUDIT_KEY_FILE: cannot read {}: {e}",
                path.display()
            )
        })?;
        AnchorSigner::from_pem(&text)
            .map(|signer| Some(Arc::new(signer)))
            .map_err(|e| anyhow::anyhow!("MEETINGS_AUDIT_KEY_FILE ({}): {e}", path.display()))
    }
}

type AnchorRow = (String, i64, Vec<u8>, Option<String>, Option<Vec<u8>>);

fn anchor(row: AnchorRow) -> Result<Anchor, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("event_anchors: bad {what}").into());
    Ok(Anchor {
        position: row.0.parse().map_err(|_| bad("position"))?,
        events: row.1,
        chain: row.2.try_into().map_err(|_| bad("chain"))?,
        signature: row.3.zip(row.4),
    })
}

/// Anchors to read, in position order.
#[async_trait]
pub trait AnchorReader: Send {
    /// The anchors after `after`, at most `limit`, in position order.
    async fn after(&mut self, after: Position, limit: i64) -> Result<Vec<Anchor>, sqlx::Error>;
}

/// Where anchors are kept: `event_anchors` of PostgreSQL (a connection) or of embedded
/// mode's SQLite events file. Positions are 32 hexadecimal digits, so text order is position
/// order on both.
#[async_trait]
pub trait AnchorLog: AnchorReader {
    /// The anchor at exactly `position`, if one was written there.
    async fn at(&mut self, position: Position) -> Result<Option<Anchor>, sqlx::Error>;

    /// Every anchor after `after`, read now: what a reader that is not inside one snapshot
    /// with the log compares with (anchors written later name events read later too).
    async fn all_after(&mut self, after: Position) -> Result<Vec<Anchor>, sqlx::Error> {
        let mut all: Vec<Anchor> = Vec::new();
        loop {
            let from = all.last().map_or(after, |a| a.position);
            let page = self.after(from, 1000).await?;
            let full = page.len() == 1000;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// The newest anchor.
    async fn last(&mut self) -> Result<Option<Anchor>, sqlx::Error>;

    /// Writes `anchor`, signed by `signer` when given (once: a second write is ignored).
    async fn write(
        &mut self,
        anchor: &Anchor,
        signer: Option<&AnchorSigner>,
    ) -> Result<(), sqlx::Error>;
}

const SELECT: &str = "SELECT position, events, chain, key_id, signature FROM event_anchors";

#[async_trait]
impl AnchorReader for PgConnection {
    async fn after(&mut self, after: Position, limit: i64) -> Result<Vec<Anchor>, sqlx::Error> {
        let rows: Vec<AnchorRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after.to_string())
        .bind(limit)
        .fetch_all(self)
        .await?;
        rows.into_iter().map(anchor).collect()
    }
}

#[async_trait]
impl AnchorLog for PgConnection {
    async fn at(&mut self, position: Position) -> Result<Option<Anchor>, sqlx::Error> {
        let row: Option<AnchorRow> = sqlx::query_as(&format!("{SELECT} WHERE position = $1"))
            .bind(position.to_string())
            .fetch_optional(self)
            .await?;
        row.map(anchor).transpose()
    }

    async fn last(&mut self) -> Result<Option<Anchor>, sqlx::Error> {
        let row: Option<AnchorRow> =
            sqlx::query_as(&format!("{SELECT} ORDER BY position DESC LIMIT 1"))
                .fetch_optional(self)
                .await?;
        row.map(anchor).transpose()
    }

    async fn write(
        &mut self,
        anchor: &Anchor,
        signer: Option<&AnchorSigner>,
    ) -> Result<(), sqlx::Error> {
        let (key_id, signature) = signer.map(|s| s.sign(anchor)).unzip();
        sqlx::query(
            "INSERT INTO event_anchors (position, events, chain, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position) DO NOTHING",
        )
        .bind(anchor.position.to_string())
        .bind(anchor.events)
        .bind(&anchor.chain[..])
        .bind(key_id)
        .bind(signature)
        .execute(self)
        .await?;
        Ok(())
    }
}

/// Anchors held in memory (read once, in position order).
pub struct Loaded(pub Vec<Anchor>);

#[async_trait]
impl AnchorReader for Loaded {
    async fn after(&mut self, after: Position, limit: i64) -> Result<Vec<Anchor>, sqlx::Error> {
        let first = self.0.partition_point(|a| a.position <= after);
        let limit = usize::try_from(limit).unwrap_or(0);
        Ok(self.0[first..].iter().take(limit).cloned().collect())
    }
}

/// The anchors of embedded mode's events file (one process writes it: no lock needed).
pub struct SqliteAnchors(pub SqliteFile);

#[async_trait]
impl AnchorReader for SqliteAnchors {
    async fn after(&mut self, after: Position, limit: i64) -> Result<Vec<Anchor>, sqlx::Error> {
        let rows: Vec<AnchorRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE position > ? ORDER BY position LIMIT ?"
        ))
        .bind(after.to_string())
        .bind(limit)
        .fetch_all(&self.0.reader)
        .await?;
        rows.into_iter().map(anchor).collect()
    }
}

#[async_trait]
impl AnchorLog for SqliteAnchors {
    async fn at(&mut self, position: Position) -> Result<Option<Anchor>, sqlx::Error> {
        let row: Option<AnchorRow> = sqlx::query_as(&format!("{SELECT} WHERE position = ?"))
            .bind(position.to_string())
            .fetch_optional(&self.0.reader)
            .await?;
        row.map(anchor).transpose()
    }

    async fn last(&mut self) -> Result<Option<Anchor>, sqlx::Error> {
        let row: Option<AnchorRow> =
            sqlx::query_as(&format!("{SELECT} ORDER BY position DESC LIMIT 1"))
                .fetch_optional(&self.0.reader)
                .await?;
        row.map(anchor).transpose()
    }

    async fn write(
        &mut self,
        anchor: &Anchor,
        signer: Option<&AnchorSigner>,
    ) -> Result<(), sqlx::Error> {
        let (key_id, signature) = signer.map(|s| s.sign(anchor)).unzip();
        sqlx::query(
            "INSERT INTO event_anchors (position, events, chain, recorded_at, key_id, signature) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (position) DO NOTHING",
        )
        .bind(anchor.position.to_string())
        .bind(anchor.events)
        .bind(&anchor.chain[..])
        .bind(micros(chrono::Utc::now()))
        .bind(key_id)
        .bind(signature)
        .execute(&self.0.writer)
        .await?;
        Ok(())
    }
}

/// Name of the advisory lock that makes one anchor task active per database.
const LOCK: &str = "meetings-anchor";

/// Writes anchors as the log grows, until `shutdown`. Stands by while another process's
/// anchor task is active; restarts from the newest anchor after a failure.
pub async fn run(
    pool: PgPool,
    store: Arc<dyn EventStore>,
    signer: Option<Arc<AnchorSigner>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    platform::leader::run_terms(shutdown, platform::leader::RETRY_DELAY, || async {
        if let Err(error) = lead(&pool, store.as_ref(), signer.as_deref(), false).await {
            interrupted(&error);
        }
        std::ops::ControlFlow::<()>::Continue(())
    })
    .await;
}

fn interrupted(error: &anyhow::Error) {
    tracing::warn!(
        error = format!("{error:#}"),
        "anchor task interrupted, resuming"
    );
}

/// Anchors everything readable now (one anchor at the current end of the log, plus one
/// every [`EVERY`] events on the way) and answers the newest anchor. For tests and
/// benchmarks, and for operators who want an anchor before an export; `None` when another
/// anchor task holds the lock or the log is empty.
pub async fn catch_up(
    pool: &PgPool,
    store: &dyn EventStore,
    signer: Option<&AnchorSigner>,
) -> anyhow::Result<Option<Anchor>> {
    lead(pool, store, signer, true).await
}

/// One term as the active anchor task of a PostgreSQL database (its advisory lock).
async fn lead(
    pool: &PgPool,
    store: &dyn EventStore,
    signer: Option<&AnchorSigner>,
    once: bool,
) -> anyhow::Result<Option<Anchor>> {
    let Some(mut conn) = platform::leader::try_lead(pool, LOCK).await? else {
        return Ok(None);
    };
    term(&mut conn, store, signer, once).await
}

/// The anchor task of embedded mode, until `shutdown`: the only process of its files, so
/// it needs no lock. Restarts from the newest anchor after a failure.
pub async fn run_embedded(
    events: SqliteFile,
    store: Arc<dyn EventStore>,
    signer: Option<Arc<AnchorSigner>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let work = async {
        let mut anchors = SqliteAnchors(events);
        loop {
            if let Err(error) = term(&mut anchors, store.as_ref(), signer.as_deref(), false).await {
                interrupted(&error);
            }
            tokio::time::sleep(platform::leader::RETRY_DELAY).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}

/// One term as the active anchor task: from the newest anchor, link every event read, write
/// an anchor every [`EVERY`] events and [`WITHIN`] after the newest. With `once`, stops (after
/// anchoring the end) when caught up.
pub async fn term(
    log: &mut dyn AnchorLog,
    store: &dyn EventStore,
    signer: Option<&AnchorSigner>,
    once: bool,
) -> anyhow::Result<Option<Anchor>> {
    let mut anchored = log.last().await?.unwrap_or_else(Anchor::start);
    let mut current = anchored.clone();
    let mut tail = StoreTail::new(store, current.position, EVERY);
    let mut oldest_unanchored: Option<Instant> = None;
    loop {
        let events = tail.read().await?;
        for event in &events {
            current.extend(event.position, &event.hash);
            oldest_unanchored.get_or_insert_with(Instant::now);
            if current.events % EVERY == 0 {
                log.write(&current, signer).await?;
                anchored = current.clone();
                oldest_unanchored = None;
            }
        }
        if !events.is_empty() {
            continue;
        }
        let due = oldest_unanchored.is_some_and(|since| since.elapsed() >= WITHIN);
        if current.events > anchored.events && (due || once) {
            log.write(&current, signer).await?;
            anchored = current.clone();
            oldest_unanchored = None;
        }
        if once {
            return Ok((anchored.events > 0).then_some(anchored));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Adds the anchor task of `pool`'s log to `server` (the command side hosts it).
pub fn with_task(
    server: platform::service::Server,
    pool: PgPool,
    store: Arc<dyn EventStore>,
    signer: Option<Arc<AnchorSigner>>,
) -> platform::service::Server {
    server.with_task("anchors", move |stop| async move {
        run(pool, store, signer, stop.cancelled_owned()).await;
        Ok(())
    })
}

/// Adds the anchor task of embedded mode's log to `server`.
pub fn with_embedded_task(
    server: platform::service::Server,
    events: SqliteFile,
    store: Arc<dyn EventStore>,
    signer: Option<Arc<AnchorSigner>>,
) -> platform::service::Server {
    server.with_task("anchors", move |stop| async move {
        run_embedded(events, store, signer, stop.cancelled_owned()).await;
        Ok(())
    })
}
