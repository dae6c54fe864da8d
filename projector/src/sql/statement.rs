//! Statements assembled from parts. A part is one CTE (or the main query) with the columns it
//! reads as parameter arrays and the function that binds them, side by side; the statement
//! numbers the parameters, so a table adds or changes a column in one place and no
//! parameter is numbered by hand.

use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Encode, Postgres, Type};
use uuid::Uuid;

/// A parameter of a part: its name and its PostgreSQL type (the element type for columns).
pub(crate) type Param = (&'static str, &'static str);

/// One CTE of a statement, or its main query, reading from a `S`.
pub(crate) struct Part<S: ?Sized + 'static> {
    /// The name of the CTE (unused for the main query).
    pub name: &'static str,
    /// Its SQL. `{rows}` stands for `unnest(<one array per column>) AS r(<column names>)`,
    /// `{<scalar>}` for the parameter of that scalar.
    pub sql: &'static str,
    /// One array parameter per column, all of the same length: one element per row.
    pub columns: &'static [Param],
    pub scalars: &'static [Param],
    /// Binds the columns' arrays, then the scalars, in their order.
    pub bind: fn(&S, &mut Binder) -> Result<(), BoxDynError>,
}

impl<S: ?Sized> Part<S> {
    fn params(&self) -> usize {
        self.columns.len() + self.scalars.len()
    }

    /// The SQL with its parameters numbered from `first`.
    fn sql(&self, first: usize) -> String {
        let mut number = first..;
        let mut sql = self.sql.to_owned();
        if !self.columns.is_empty() {
            let arrays: Vec<String> = self
                .columns
                .iter()
                .zip(&mut number)
                .map(|((_, ty), n)| format!("${n}::{ty}[]"))
                .collect();
            let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
            let rows = format!("unnest({}) AS r({})", arrays.join(", "), names.join(", "));
            assert!(
                sql.contains("{rows}"),
                "BUG: part {} reads no {{rows}}",
                self.name
            );
            sql = sql.replace("{rows}", &rows);
        }
        for ((name, ty), n) in self.scalars.iter().zip(&mut number) {
            let placeholder = format!("{{{name}}}");
            assert!(
                sql.contains(&placeholder),
                "BUG: part {} lacks {placeholder}",
                self.name
            );
            sql = sql.replace(&placeholder, &format!("${n}::{ty}"));
        }
        sql
    }
}

/// `WITH <ctes> <main>`, assembled once, and the binding of its parameters from a `S`.
pub(crate) struct Statement<S: ?Sized + 'static> {
    sql: String,
    /// The CTEs, then the main query: the order of the parameters.
    parts: Vec<&'static Part<S>>,
}

impl<S: ?Sized> Statement<S> {
    pub fn new(ctes: &[&'static Part<S>], main: &'static Part<S>) -> Self {
        let mut first = 1;
        let mut with = Vec::with_capacity(ctes.len());
        for part in ctes {
            with.push(format!("{} AS ({})", part.name, part.sql(first)));
            first += part.params();
        }
        let main_sql = main.sql(first);
        let sql = if with.is_empty() {
            main_sql
        } else {
            format!("WITH {} {main_sql}", with.join(", "))
        };
        let mut parts = ctes.to_vec();
        parts.push(main);
        Self { sql, parts }
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The parameters of the statement, taken from `source`.
    pub fn arguments(&self, source: &S) -> Result<PgArguments, BoxDynError> {
        let mut binder = Binder(PgArguments::default());
        for part in &self.parts {
            let expected = binder.0.len() + part.params();
            (part.bind)(source, &mut binder)?;
            assert_eq!(
                binder.0.len(),
                expected,
                "BUG: part {} binds other parameters than it declares",
                part.name
            );
        }
        Ok(binder.0)
    }
}

/// Collects the parameters of a statement.
pub(crate) struct Binder(PgArguments);

impl Binder {
    /// One array parameter: `value` of every row.
    pub fn column<'r, R, T>(
        &mut self,
        rows: &'r [R],
        value: impl FnMut(&'r R) -> T,
    ) -> Result<(), BoxDynError>
    where
        T: 'r,
        Vec<T>: Encode<'r, Postgres> + Type<Postgres>,
    {
        Arguments::add(&mut self.0, rows.iter().map(value).collect::<Vec<T>>())
    }

    /// One scalar parameter.
    pub fn scalar<'r, T>(&mut self, value: T) -> Result<(), BoxDynError>
    where
        T: Encode<'r, Postgres> + Type<Postgres> + 'r,
    {
        Arguments::add(&mut self.0, value)
    }
}

/// JSON as text, for a `text` column cast to `jsonb` row by row (a nested array parameter
/// cannot carry per-row `NULL`s and values of different shapes as simply).
pub(crate) fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    value.map(serde_json::Value::to_string)
}

/// A map as JSON text (`{}` when empty), for a `NOT NULL` `jsonb` column.
pub(crate) fn json_map<K: serde::Serialize + Ord, V: serde::Serialize>(
    map: &std::collections::BTreeMap<K, V>,
) -> String {
    serde_json::to_string(map).expect("BUG: a map with string-like keys serializes")
}

/// `{id,id,...}`: a `uuid[]` literal, for a `text` column cast to `uuid[]` row by row,
/// because PostgreSQL arrays of arrays must be rectangular and the rows' lists differ in
/// length.
pub(crate) fn uuid_array_literal(ids: &[Uuid]) -> String {
    let mut literal = String::with_capacity(2 + ids.len() * 37);
    literal.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push_str(&id.hyphenated().to_string());
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pairs(Vec<(Uuid, i64)>);

    static PAIRS: Part<Pairs> = Part {
        name: "pairs",
        sql: "INSERT INTO t (id, n, tag) SELECT id, n, {tag} FROM {rows}",
        columns: &[("id", "uuid"), ("n", "bigint")],
        scalars: &[("tag", "text")],
        bind: |pairs, binder| {
            binder.column(&pairs.0, |(id, _)| *id)?;
            binder.column(&pairs.0, |(_, n)| *n)?;
            binder.scalar("x")
        },
    };

    static MAIN: Part<Pairs> = Part {
        name: "main",
        sql: "SELECT count(*) FROM t WHERE tag = {tag}",
        columns: &[],
        scalars: &[("tag", "text")],
        bind: |_, binder| binder.scalar("x"),
    };

    #[test]
    fn parameters_are_numbered_in_part_order() {
        let statement = Statement::new(&[&PAIRS], &MAIN);
        assert_eq!(
            statement.sql(),
            "WITH pairs AS (INSERT INTO t (id, n, tag) SELECT id, n, $3::text \
             FROM unnest($1::uuid[], $2::bigint[]) AS r(id, n)) \
             SELECT count(*) FROM t WHERE tag = $4::text"
        );
        let arguments = statement.arguments(&Pairs(vec![(Uuid::nil(), 1)])).unwrap();
        assert_eq!(arguments.len(), 4);
    }

    #[test]
    fn lists_become_uuid_array_literals() {
        assert_eq!(uuid_array_literal(&[]), "{}");
        assert_eq!(
            uuid_array_literal(&[Uuid::from_u128(1), Uuid::from_u128(2)]),
            "{00000000-0000-0000-0000-000000000001,00000000-0000-0000-0000-000000000002}"
        );
    }
}
