//! The shadow tables of a replay: made empty beside the live ones, with what completes them
//! after the bulk build (logging, keys, indexes) deferred.

use sqlx::{Connection, PgConnection, PgPool};

use super::{APPEND_ONLY, INDEXED_EARLY, SHADOW, TABLES};

/// Creates the empty shadow tables with their primary keys, storage options and grants;
/// answers the statements that complete them after the bulk build (unique constraints,
/// foreign keys, secondary indexes).
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
        let mut completing = Vec::new();
        let source = format!("{live}.{table}");
        let target = format!("{SHADOW}.{table}");
        // Unlogged while it is built: no write-ahead log for rows that a crash would make
        // worthless anyway (a failed replay starts over); logged before it can be swapped in
        // (first, before it has indexes: that rewrites the table). Logging the append-only
        // tables from the start instead measured the same.
        now.push(format!(
            "CREATE UNLOGGED TABLE {target} (LIKE {source} INCLUDING DEFAULTS \
             INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED \
             INCLUDING IDENTITY)"
        ));
        completing.push(format!("ALTER TABLE {target} SET LOGGED"));
        let options: Option<Vec<String>> =
            sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = $1::regclass")
                .bind(&source)
                .fetch_one(&mut *conn)
                .await?;
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            now.push(format!("ALTER TABLE {target} SET ({})", options.join(", ")));
        }
        let constraints: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT contype::text, quote_ident(conname), pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'f') \
             ORDER BY conname",
        )
        .bind(&source)
        .fetch_all(&mut *conn)
        .await?;
        for (kind, name, definition) in constraints {
            let definition = definition.replace(&format!("REFERENCES {live}."), "REFERENCES ");
            let statement = format!("ALTER TABLE {target} ADD CONSTRAINT {name} {definition}");
            match kind.as_str() {
                // Tables the build only appends to need no key until it ends.
                "p" if !APPEND_ONLY.contains(table) => now.push(statement),
                "f" => deferred.foreign.push(statement),
                _ => completing.push(statement),
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
                completing.push(index);
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
        deferred.tables.push(completing);
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
    /// Per table, in order: `SET LOGGED`, its unique constraints and secondary indexes.
    tables: Vec<Vec<String>>,
    /// Foreign keys, once every table has its keys (unqualified references: run with the
    /// shadow schema first in `search_path`).
    foreign: Vec<String>,
}

/// Runs the deferred statements: the tables' on two connections at once (one table after
/// another on each, the longest first: PostgreSQL builds one index per connection on one
/// core), then the foreign keys on `conn`.
pub(super) async fn complete_shadow(
    conn: &mut PgConnection,
    pool: &PgPool,
    deferred: &Deferred,
) -> anyhow::Result<()> {
    let mut tables: Vec<&Vec<String>> = deferred.tables.iter().collect();
    tables.sort_by_key(|statements| std::cmp::Reverse(statements.len()));
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(tables));
    let mut second = pool.acquire().await?.detach();
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut second)
        .await?;
    let (first, other) = tokio::join!(drain(conn, &queue), drain(&mut second, &queue));
    second.close().await.ok();
    first?;
    other?;
    for statement in &deferred.foreign {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs the statements of table after table from `queue` until it is empty.
async fn drain(
    conn: &mut PgConnection,
    queue: &std::sync::Mutex<std::collections::VecDeque<&Vec<String>>>,
) -> Result<(), sqlx::Error> {
    loop {
        let Some(statements) = queue.lock().expect("BUG: poisoned").pop_front() else {
            return Ok(());
        };
        for statement in statements {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
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
