//! A batch's rows as one table inside a statement, for the statements that
//! join, insert or update as many rows as the batch holds.
//!
//! SQLite gets a `VALUES` list of placeholders. PostgreSQL gets the rows as
//! one JSON parameter, unpacked by `jsonb_array_elements`, so the
//! statement's text no longer depends on the row count. Why: sqlx prepares
//! every statement and keeps what it prepared per connection; with a
//! `VALUES` list of every length from 1 to 256 per kind of statement, a
//! saturated cluster ran 870 distinct statements in 10 s and PostgreSQL
//! spent about a fifth of its time parsing and planning them
//! (docs/benchmarks-journal.md). With one text per kind each connection prepares
//! each once. In process, SQLite's prepare is no round trip, and the
//! standalone benchmarks were measured with its `VALUES` lists.
//!
//! Either way the table's columns are `column1`, `column2`, ..., the names
//! both databases give a `VALUES` list's columns.

use std::fmt::Write;

use sqlx::any::AnyArguments;
use sqlx::Arguments;

use super::placeholders::Placeholders;
use super::{Backend, StoreError};

/// The SQL type of one column, which PostgreSQL needs to read it back out
/// of JSON.
#[derive(Clone, Copy)]
pub(super) enum Column {
    Int,
    Text,
}

/// One value of a row.
pub(super) enum Value<'q> {
    Int(i64),
    Text(&'q str),
    Owned(String),
}

/// Rows of the same columns, gathered then bound as one table.
pub(super) struct BatchRows<'q> {
    backend: Backend,
    columns: &'static [Column],
    values: Vec<Value<'q>>,
}

impl<'q> BatchRows<'q> {
    pub fn new(conn: &sqlx::AnyConnection, columns: &'static [Column]) -> BatchRows<'q> {
        Self::for_backend(Backend::of(conn), columns)
    }

    /// For a statement run on the pool rather than on a connection in hand.
    pub fn for_backend(backend: Backend, columns: &'static [Column]) -> BatchRows<'q> {
        BatchRows { backend, columns, values: Vec::new() }
    }

    /// One text column, a row per value: the keys of a lookup per user.
    pub fn texts(backend: Backend, values: &[&'q str]) -> BatchRows<'q> {
        let mut rows = Self::for_backend(backend, &[Column::Text]);
        for value in values {
            rows.push([Value::Text(value)]);
        }
        rows
    }

    /// Adds a row: one value per column, in the columns' order.
    pub fn push<const N: usize>(&mut self, row: [Value<'q>; N]) {
        debug_assert_eq!(N, self.columns.len(), "a row has one value per column");
        self.values.extend(row);
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.columns.len()
    }

    /// The rows as a table to join or update from: `(…) AS alias`.
    pub fn table(&self, params: &mut Placeholders, alias: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("(VALUES {}) AS {alias}", params.rows(self.len(), self.columns.len())),
            Backend::Postgres => format!("({}) AS {alias}", self.unpacked(params.one())),
        }
    }

    /// `INSERT INTO {target} …` of the rows, `target` being the table and
    /// its columns: `events (chat_id, id, …)`.
    ///
    /// On SQLite the statement is `INSERT OR FAIL`. A multi-row `INSERT`
    /// whose constraints may `ABORT` (the default) inside a transaction
    /// keeps a statement journal, a copy of every page it is about to
    /// change, so that it alone can be undone; at 100,000 deliveries/s
    /// that copying and its allocations were an eighth of the embedded
    /// worker's thread (docs/benchmarks-journal.md, sixth session). `FAIL` stops
    /// at the conflicting row without undoing the statement's earlier rows,
    /// and needs no journal. Nothing is lost by it: every statement error
    /// fails its whole batch, whose transaction is rolled back.
    pub fn insert_into(&self, target: &str, params: &mut Placeholders) -> String {
        match self.backend {
            Backend::Sqlite => {
                format!("INSERT OR FAIL INTO {target} VALUES {}", params.rows(self.len(), self.columns.len()))
            }
            Backend::Postgres => format!("INSERT INTO {target} {}", self.unpacked(params.one())),
        }
    }

    /// Inserts the rows into `target` ("table (columns)") on `conn`, as
    /// [`Self::insert_into`] writes the statement.
    pub async fn insert(self, conn: &mut sqlx::AnyConnection, target: &str) -> Result<(), StoreError> {
        let sql = self.insert_into(target, &mut Placeholders::for_connection(conn));
        let mut args = AnyArguments::default();
        self.add_to(&mut args)?;
        sqlx::query_with(&sql, args).execute(conn).await?;
        Ok(())
    }

    /// Binds the rows where [`Self::table`] or [`Self::insert_into`] put
    /// their placeholders.
    pub fn add_to(self, args: &mut AnyArguments<'q>) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                for value in self.values {
                    match value {
                        Value::Int(n) => add(args, n)?,
                        Value::Text(s) => add(args, s)?,
                        Value::Owned(s) => add(args, s)?,
                    }
                }
                Ok(())
            }
            Backend::Postgres => add(args, self.json()),
        }
    }

    /// `SELECT (r->>0)::bigint AS column1, r->>1 AS column2 … FROM
    /// jsonb_array_elements($n::jsonb) AS r WHERE …`.
    ///
    /// The `WHERE` is always true (every row is an array) and is there for
    /// the planner, which takes any set-returning function for 100 rows
    /// and would hash-join them with a scan of the whole joined table
    /// (`members` of 20,000 rows, in a scratch database) where a probe of
    /// its key per row is what a batch needs. The planner guesses that an
    /// equality it has no statistics for keeps one row in 200, so the
    /// estimate falls to one row and every join becomes key probes: the
    /// plan no longer hinges on how big the tables were when it was made.
    fn unpacked(&self, param: String) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| match column {
                Column::Int => format!("(r->>{i})::bigint AS column{}", i + 1),
                Column::Text => format!("r->>{i} AS column{}", i + 1),
            })
            .collect();
        format!(
            "SELECT {} FROM jsonb_array_elements({param}::jsonb) AS r WHERE jsonb_typeof(r) = 'array'",
            columns.join(", ")
        )
    }

    /// `[[1,"alice"],[2,"bob"]]`
    fn json(&self) -> String {
        let mut json = String::with_capacity(self.values.len() * 16 + 2);
        json.push('[');
        for (i, row) in self.values.chunks(self.columns.len()).enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push('[');
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    json.push(',');
                }
                match value {
                    Value::Int(n) => {
                        let _ = write!(json, "{n}");
                    }
                    Value::Text(s) => push_json_string(&mut json, s),
                    Value::Owned(s) => push_json_string(&mut json, s),
                }
            }
            json.push(']');
        }
        json.push(']');
        json
    }
}

/// Binds the next parameter.
pub(super) fn add<'q, T>(args: &mut AnyArguments<'q>, value: T) -> Result<(), StoreError>
where
    T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    args.add(value).map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
}

fn push_json_string(json: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    json.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(backend: Backend) -> BatchRows<'static> {
        let mut rows = BatchRows { backend, columns: &[Column::Int, Column::Text], values: Vec::new() };
        rows.push([Value::Int(1), Value::Text("a\"b")]);
        rows.push([Value::Int(-2), Value::Owned("é\n".to_owned())]);
        rows
    }

    #[test]
    fn postgres_gets_one_parameter_whatever_the_rows() {
        let rows = rows(Backend::Postgres);
        let mut params = Placeholders::for_backend(Backend::Postgres);
        assert_eq!(params.one(), "$1");
        assert_eq!(
            rows.table(&mut params, "v"),
            "(SELECT (r->>0)::bigint AS column1, r->>1 AS column2 FROM jsonb_array_elements($2::jsonb) AS r \
             WHERE jsonb_typeof(r) = 'array') AS v"
        );
        assert_eq!(params.one(), "$3");
        assert_eq!(
            rows.insert_into("t (a, b)", &mut params),
            "INSERT INTO t (a, b) SELECT (r->>0)::bigint AS column1, r->>1 AS column2 \
             FROM jsonb_array_elements($4::jsonb) AS r WHERE jsonb_typeof(r) = 'array'"
        );
        assert_eq!(rows.json(), r#"[[1,"a\"b"],[-2,"é\n"]]"#);
    }

    #[test]
    fn sqlite_gets_a_values_list() {
        let rows = rows(Backend::Sqlite);
        let mut params = Placeholders::for_backend(Backend::Sqlite);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.table(&mut params, "v"), "(VALUES (?, ?), (?, ?)) AS v");
        assert_eq!(rows.insert_into("t (a, b)", &mut params), "INSERT OR FAIL INTO t (a, b) VALUES (?, ?), (?, ?)");
    }
}
