//! `tracing` setup: text or JSON lines on stderr, filtered by `RUST_LOG`
//! (default `info`).

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call does nothing.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => install(builder.fmt_fields(PlainFields).finish()),
        LogFormat::Json => install(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

fn install<S>(subscriber: S)
where
    S: tracing::Subscriber + Send + Sync + for<'a> LookupSpan<'a>,
{
    let _ = match filter(std::env::var("RUST_LOG").ok().as_deref()) {
        Filter::Targets(t) => subscriber.with(t).try_init(),
        Filter::Env(e) => subscriber.with(e).try_init(),
    };
}

/// `RUST_LOG` as the cheapest filter that means the same.
// Built once at start and moved into the subscriber: its size is no cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Filter {
    /// `target=level` directives only: decided once per call site. Every
    /// request opens a span, and `EnvFilter` takes a lock on each span's
    /// open, enter, exit and close to look for span directives.
    Targets(Targets),
    /// Directives on spans or fields (`[span{field=value}]=level`).
    Env(EnvFilter),
}

fn filter(rust_log: Option<&str>) -> Filter {
    let default = || Filter::Targets(Targets::new().with_default(tracing::Level::INFO));
    match rust_log.map(str::trim) {
        None | Some("") => default(),
        Some(s) if !s.contains(['[', '{']) => {
            s.parse::<Targets>().map_or_else(|_| default(), Filter::Targets)
        }
        Some(s) => EnvFilter::try_new(s).map_or_else(|_| default(), Filter::Env),
    }
}

/// Text fields as `name=value` (values `Debug`-quoted, so a value cannot
/// forge a field; the message bare), like `tracing_subscriber`'s default
/// but without its styling wrappers: every request opens a span whose
/// fields are formatted at once, and the default formatter's per-field
/// ANSI plumbing cost more than the rest of the request's logging.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl PlainVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let w = &mut self.writer;
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            w.write_str(sep).and_then(|()| w.write_fmt(value))
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            w.write_str(sep)
                .and_then(|()| w.write_str(name))
                .and_then(|()| w.write_char('='))
                .and_then(|()| w.write_fmt(value))
        };
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static CAPTURED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    struct CaptureWriter;

    impl std::io::Write for CaptureWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            CAPTURED.with(|c| c.borrow_mut().extend_from_slice(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_fields_quote_values_and_keep_the_message_bare() {
        let collector = tracing_subscriber::fmt()
            .fmt_fields(PlainFields)
            .with_ansi(false)
            .without_time()
            .with_writer(|| CaptureWriter)
            .finish();
        tracing::subscriber::with_default(collector, || {
            let span = tracing::info_span!("request", route = "/v1/x", n = 3);
            let _g = span.enter();
            tracing::info!(user = "a\"b\nc", "hello world");
        });
        let text = String::from_utf8(CAPTURED.with(|c| c.borrow().clone())).unwrap();
        // A quote or newline in a value stays inside its quotes.
        assert!(
            text.contains(
                r#"request{route="/v1/x" n=3}: tessera_server::logging::tests: hello world user="a\"b\nc""#
            ),
            "{text}"
        );
    }

    #[test]
    fn rust_log_picks_the_cheapest_filter_that_means_the_same() {
        use tracing::Level;
        use tracing::level_filters::LevelFilter;
        let targets = |v: Option<&str>| match filter(v) {
            Filter::Targets(t) => t,
            Filter::Env(e) => panic!("{v:?} gave an EnvFilter: {e}"),
        };
        // Missing, empty or unreadable: the default, info.
        for v in [None, Some(""), Some("  "), Some("=nonsense=")] {
            let t = targets(v);
            assert!(t.would_enable("tessera_server::edge", &Level::INFO), "{v:?}");
            assert!(!t.would_enable("tessera_server::edge", &Level::DEBUG), "{v:?}");
        }
        let t = targets(Some("warn,tessera_server::edge=debug"));
        assert!(t.would_enable("tessera_server::edge", &Level::DEBUG));
        assert!(!t.would_enable("tessera_core", &Level::INFO));
        assert!(t.would_enable("tessera_core", &Level::WARN));
        // A span or field directive needs EnvFilter.
        match filter(Some("info,[request]=debug")) {
            Filter::Env(e) => assert_eq!(e.max_level_hint(), Some(LevelFilter::DEBUG)),
            Filter::Targets(t) => panic!("span directive gave Targets: {t}"),
        }
    }
}
