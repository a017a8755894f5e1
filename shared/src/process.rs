//! What both binaries do the same way at the edges of their lives: set up
//! logging and wait for the signal to stop.

/// sqlx-postgres's module that warns of unknown URL parameters, values
/// included.
const SECRET_PRINTING_TARGET: &str = "sqlx_postgres::options::parse=error";

/// Logs to stdout, readable by default, JSON with `format == "json"`;
/// `RUST_LOG` filters (default `info`, without PostgreSQL's notices, such
/// as the one every start's migration check raises about its table
/// existing already).
///
/// Whatever `RUST_LOG` says, sqlx's warning about a `DATABASE_URL`
/// parameter it does not know stays off: it prints the parameter's value,
/// and the one such parameter people set is libpq's `sslpassword`.
pub fn init_logging(format: &str) {
    const DEFAULT: &str = "info,sqlx::postgres::notice=warn";
    // A blank RUST_LOG (a manifest's `RUST_LOG: ""`) parses as a filter
    // that lets nothing through, errors included: it counts as unset.
    let asked = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let (filter, refused) = match asked.map(tracing_subscriber::EnvFilter::try_new) {
        None => (DEFAULT.into(), None),
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (DEFAULT.into(), Some(e)),
    };
    let filter = filter.add_directive(SECRET_PRINTING_TARGET.parse().expect("a valid directive"));
    // Colour codes only for a person at a terminal: a log file or a log
    // collector would keep them as text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    if let Some(e) = refused {
        tracing::warn!(error = %e, "RUST_LOG does not parse; logging at the default level instead");
    }
}

/// An error and its causes on one line, each cause once: sqlx's errors
/// repeat their source's text in their own, so `{:#}` printed
/// `role "x" does not exist: error returned from database: role "x" does
/// not exist: role "x" does not exist`.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

/// Resolves on SIGTERM (Kubernetes, `docker stop`) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = Layer("role \"x\" does not exist", None);
        let sqlx = Layer("error returned from database: role \"x\" does not exist", Some(Box::new(inner)));
        let ours = Layer("cannot start", Some(Box::new(sqlx)));
        assert_eq!(super::describe(&ours), "cannot start: error returned from database: role \"x\" does not exist");
    }

    #[test]
    fn the_directive_that_silences_secrets_parses() {
        let directive = super::SECRET_PRINTING_TARGET.parse::<tracing_subscriber::filter::Directive>();
        assert!(directive.is_ok(), "{directive:?}");
    }
}
