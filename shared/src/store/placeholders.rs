//! Parameter placeholders for statements whose parameter count grows with
//! the batch (multi-row inserts, VALUES lists).
//!
//! SQLite gets anonymous `?`s, PostgreSQL `$1, $2, ...`. sqlx's SQLite
//! driver binds a numbered parameter by asking SQLite for its name
//! (`sqlite3_bind_parameter_name`), which searches the statement's list of
//! names from the start: binding a 256-row insert of 7 columns was
//! quadratic, and that one function was a fifth of a saturated standalone
//! gateway's CPU. An anonymous `?` takes the next index, so each statement
//! must bind its values in the order its placeholders appear in the text;
//! numbering in that order keeps PostgreSQL's binding the same.

use sqlx::AnyConnection;

use super::Backend;

/// Hands out one statement's placeholders in text order.
pub(super) struct Placeholders {
    anonymous: bool,
    next: usize,
}

impl Placeholders {
    pub fn for_connection(conn: &AnyConnection) -> Placeholders {
        Placeholders::for_backend(Backend::of(conn))
    }

    pub fn for_backend(backend: Backend) -> Placeholders {
        Placeholders { anonymous: backend == Backend::Sqlite, next: 1 }
    }

    /// The next single placeholder.
    pub fn one(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        if self.anonymous {
            "?".to_owned()
        } else {
            format!("${n}")
        }
    }

    /// A VALUES list of `rows` rows of `columns` placeholders:
    /// `($1, $2), ($3, $4)`.
    pub fn rows(&mut self, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|_| {
                let row: Vec<String> = (0..columns).map(|_| self.one()).collect();
                format!("({})", row.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, Placeholders};

    #[test]
    fn numbered_in_text_order_for_postgres() {
        let mut params = Placeholders::for_backend(Backend::Postgres);
        assert_eq!(params.one(), "$1");
        assert_eq!(params.rows(2, 3), "($2, $3, $4), ($5, $6, $7)");
    }

    #[test]
    fn anonymous_for_sqlite() {
        let mut params = Placeholders::for_backend(Backend::Sqlite);
        assert_eq!(params.one(), "?");
        assert_eq!(params.rows(2, 2), "(?, ?), (?, ?)");
    }
}
