//! The shadow tables of a replay: made empty beside the live ones, with what completes them
//! after the bulk build (keys, indexes) deferred.

use sqlx::{Connection, PgConnection, PgPool};

use super::{APPEND_ONLY, INDEXED_EARLY, SHADOW, TABLES};

/// Creates the empty shadow tables with their primary keys, storage options and grants;
/// answers the statements that complete them after the bulk build (unique keys, foreign keys,
/// secondary indexes).
pub(super) async fn prepare_shadow(
    conn: &mut PgConnection,
    live: &str,
) -> anyhow::Result<Deferred> {
    let mut now = vec![
        format!("DROP SCHEMA IF EXISTS {SHADOW} CASCADE"),
        format!("CREATE SCHEMA {SHADOW}"),
    ];
    let mut deferred = Deferred::default();
    for table in TABLES {
        let source = format!("{live}.{table}");
        let target = format!("{SHADOW}.{table}");
        // Logged from the start: the write-ahead log is written during the build, while
        // PostgreSQL mostly waits for the fold. Built unlogged, each table had to be rewritten
        // with `SET LOGGED` before its indexes (4.6 s for `rm_changes` alone).
        now.push(format!(
            "CREATE TABLE {target} (LIKE {source} INCLUDING DEFAULTS \
             INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED \
             INCLUDING IDENTITY)"
        ));
        let options: Option<Vec<String>> =
            sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = $1::regclass")
                .bind(&source)
                .fetch_one(&mut *conn)
                .await?;
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            now.push(format!("ALTER TABLE {target} SET ({})", options.join(", ")));
        }
        // Keys: (kind, name, definition, the definition of the unique index behind it).
        let constraints: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT contype::text, quote_ident(conname), pg_get_constraintdef(oid), \
                    CASE WHEN contype IN ('p', 'u') THEN pg_get_indexdef(conindid) END \
             FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'f') \
             ORDER BY conname",
        )
        .bind(&source)
        .fetch_all(&mut *conn)
        .await?;
        for (kind, name, definition, index) in constraints {
            let definition = definition.replace(&format!("REFERENCES {live}."), "REFERENCES ");
            let statement = format!("ALTER TABLE {target} ADD CONSTRAINT {name} {definition}");
            match (kind.as_str(), index) {
                // Tables the build looks rows up in have their primary key from the start.
                ("p", _) if !APPEND_ONLY.contains(table) => now.push(statement),
                ("f", _) => deferred.foreign.push(statement),
                // A unique key is built as a plain unique index (which, unlike `ADD
                // CONSTRAINT`, does not lock out the table's other index builds), then
                // attached under its name.
                (kind @ ("p" | "u"), Some(index)) if !definition.contains("DEFERRABLE") => {
                    let index = retarget_index(&index, &target)?;
                    deferred.indexes.push((table, index));
                    let key = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                    deferred.attach.push(format!(
                        "ALTER TABLE {target} ADD CONSTRAINT {name} {key} USING INDEX {name}"
                    ));
                }
                _ => deferred.attach.push(statement),
            }
        }
        let definitions: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = $1::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
             ORDER BY i.indexrelid",
        )
        .bind(&source)
        .fetch_all(&mut *conn)
        .await?;
        for definition in definitions {
            let index = retarget_index(&definition, &target)?;
            if INDEXED_EARLY.contains(table) {
                now.push(index);
            } else {
                deferred.indexes.push((table, index));
            }
        }
        let grants: Vec<String> = sqlx::query_scalar(
            "SELECT format('GRANT %s ON %s TO %s', a.privilege_type, $2::text, \
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                         ELSE quote_ident(pg_get_userbyid(a.grantee)) END) \
             FROM pg_class c, aclexplode(c.relacl) a \
             WHERE c.oid = $1::regclass AND a.grantee <> c.relowner",
        )
        .bind(&source)
        .bind(&target)
        .fetch_all(&mut *conn)
        .await?;
        now.extend(grants);
        let owner: String = sqlx::query_scalar(
            "SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(&source)
        .fetch_one(&mut *conn)
        .await?;
        now.push(format!(
            "DO $$ BEGIN IF quote_ident(current_user) <> '{owner}' THEN \
             EXECUTE 'ALTER TABLE {target} OWNER TO {owner}'; END IF; END $$"
        ));
    }
    let mut tx = conn.begin().await?;
    for statement in &now {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(deferred)
}

/// The statements that complete the shadow tables after the bulk build.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Index builds (unique keys' indexes among them), each independent of the others, with
    /// the table they index.
    indexes: Vec<(&'static str, String)>,
    /// Constraints attached once the indexes exist: unique keys onto their indexes, and any
    /// other key built by `ADD CONSTRAINT`.
    attach: Vec<String>,
    /// Foreign keys, once every table has its keys (unqualified references: run with the
    /// shadow schema first in `search_path`).
    foreign: Vec<String>,
}

/// Builds the deferred indexes of every table but `held_back` on two connections of `pool` at
/// once (PostgreSQL builds an index on one core; builds on one table share its lock), those
/// of the largest tables first.
pub(super) async fn build_indexes(
    pool: &PgPool,
    deferred: &Deferred,
    held_back: &str,
) -> anyhow::Result<()> {
    let mut first = pool.acquire().await?.detach();
    let mut second = pool.acquire().await?.detach();
    let mut indexes = Vec::with_capacity(deferred.indexes.len());
    for (table, statement) in &deferred.indexes {
        if *table == held_back {
            continue;
        }
        let size: i64 = sqlx::query_scalar("SELECT pg_relation_size($1::regclass)")
            .bind(format!("{SHADOW}.{table}"))
            .fetch_one(&mut first)
            .await?;
        indexes.push((size, statement));
    }
    indexes.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    let queue = std::sync::Mutex::new(
        indexes
            .into_iter()
            .map(|(_, statement)| statement)
            .collect::<std::collections::VecDeque<_>>(),
    );
    let (one, other) = tokio::join!(drain(&mut first, &queue), drain(&mut second, &queue));
    first.close().await.ok();
    second.close().await.ok();
    one?;
    other?;
    Ok(())
}

/// Builds the indexes of `held_back`, attaches the keys and checks the foreign keys, on `conn`
/// (whose `search_path` is the shadow schema, as the foreign keys' references are
/// unqualified).
pub(super) async fn attach_keys(
    conn: &mut PgConnection,
    deferred: &Deferred,
    held_back: &str,
) -> anyhow::Result<()> {
    for (table, statement) in &deferred.indexes {
        if *table == held_back {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
    }
    for statement in deferred.attach.iter().chain(&deferred.foreign) {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs statements from `queue` until it is empty.
async fn drain(
    conn: &mut PgConnection,
    queue: &std::sync::Mutex<std::collections::VecDeque<&String>>,
) -> Result<(), sqlx::Error> {
    loop {
        let Some(statement) = queue.lock().expect("BUG: poisoned").pop_front() else {
            return Ok(());
        };
        sqlx::query(statement).execute(&mut *conn).await?;
    }
}

/// `CREATE INDEX name ON <table> USING …` of a live table, made to create the same index
/// (same name, method, columns, options) on `target`.
fn retarget_index(definition: &str, target: &str) -> anyhow::Result<String> {
    let on = definition
        .find(" ON ")
        .ok_or_else(|| anyhow::anyhow!("unexpected index definition: {definition}"))?;
    let using = definition[on..]
        .find(" USING ")
        .map(|i| on + i)
        .ok_or_else(|| anyhow::anyhow!("unexpected index definition: {definition}"))?;
    let only = if definition[on..using].contains(" ONLY ") {
        "ONLY "
    } else {
        ""
    };
    Ok(format!(
        "{} ON {only}{target}{}",
        &definition[..on],
        &definition[using..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_definition_is_retargeted_with_its_name_method_and_options() {
        assert_eq!(
            retarget_index(
                "CREATE INDEX rm_changes_audience ON public.rm_changes USING gin (audience) WITH (fastupdate='off')",
                "meetings_replay.rm_changes"
            )
            .unwrap(),
            "CREATE INDEX rm_changes_audience ON meetings_replay.rm_changes USING gin (audience) WITH (fastupdate='off')"
        );
    }
}
