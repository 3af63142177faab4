//! `tracing` setup: text or JSON lines on stderr, filtered by `RUST_LOG`
//! (default `info`).

use std::fmt;
use std::io::IsTerminal;

use axum::http::HeaderValue;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call does nothing.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let ansi = std::io::stderr().is_terminal();
    let _ = subscriber(format, rust_log.as_deref(), ansi, std::io::stderr).try_init();
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    rust_log: Option<&str>,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // The builder's own level cap (INFO unless told) would sit under the
    // `RUST_LOG` filter and silently drop the debug lines it asks for.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => filtered(
            builder
                .event_format(WithRequestId::text(
                    tracing_subscriber::fmt::format().with_ansi(ansi),
                ))
                .finish(),
            rust_log,
        ),
        LogFormat::Json => filtered(
            builder
                .json()
                .event_format(WithRequestId::json(
                    tracing_subscriber::fmt::format()
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false),
                ))
                .finish(),
            rust_log,
        ),
    }
}

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// Runs `fut` as the handling of the request with this id: every line
/// logged while it runs (on its task) carries `request_id`.
pub(crate) fn in_request<F: Future>(id: HeaderValue, fut: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, fut)
}

/// Adds the current request's id (see [`in_request`]) to each line the
/// inner format writes: a trailing `request_id="…"` field in text, a
/// `"request_id"` member in JSON. Lines logged outside a request are the
/// inner format's, unchanged.
#[derive(Debug, Clone)]
pub struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<F> WithRequestId<F> {
    fn text(inner: F) -> Self {
        Self { inner, json: false }
    }

    fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        // A header value that is not visible ASCII (a client may send
        // anything) is not printed; the response still carries it.
        let id = REQUEST_ID
            .try_with(|id| id.to_str().ok().map(str::to_owned))
            .ok()
            .flatten();
        let Some(id) = id else {
            return self.inner.format_event(ctx, writer, event);
        };
        // The inner format ends the line; the id goes before that end.
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        match line.strip_suffix('}') {
            Some(object) if self.json => {
                let id = serde_json::to_string(&id).map_err(|_| fmt::Error)?;
                let sep = if object.trim_end().ends_with('{') { "" } else { "," };
                writeln!(writer, "{object}{sep}\"request_id\":{id}}}")
            }
            _ => writeln!(writer, "{line} request_id={id:?}"),
        }
    }
}

fn filtered<S>(subscriber: S, rust_log: Option<&str>) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    S: tracing::Subscriber + Send + Sync + for<'a> LookupSpan<'a>,
{
    match filter(rust_log) {
        Filter::Targets(t) => Box::new(subscriber.with(t)),
        Filter::Env(e) => Box::new(subscriber.with(e)),
    }
}

/// `RUST_LOG` as the cheapest filter that means the same.
// Built once at start and moved into the subscriber: its size is no cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Filter {
    /// `target=level` directives only: decided once per call site.
    /// `EnvFilter` takes a lock on each span's open, enter, exit and close
    /// to look for span directives.
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
    fn text_values_are_quoted_so_a_value_cannot_forge_a_field() {
        let lines = captured_lines(LogFormat::Text, None, || {
            tracing::info!(user = "a\" admin=\"yes\nc", n = 3, "hello world");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with(r#"hello world user="a\" admin=\"yes\nc" n=3"#),
            "{lines:?}"
        );
    }

    /// Lines logged while `f` runs under `subscriber(format, rust_log)`.
    fn captured_lines(format: LogFormat, rust_log: Option<&str>, f: impl FnOnce()) -> Vec<String> {
        CAPTURED.with(|c| c.borrow_mut().clear());
        tracing::subscriber::with_default(subscriber(format, rust_log, false, || CaptureWriter), f);
        let text = String::from_utf8(CAPTURED.with(|c| c.borrow().clone())).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// Logs one line inside a request with id `id` and one outside any.
    fn inside_and_outside(id: &'static str) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(in_request(HeaderValue::from_static(id), async {
            tracing::warn!(code = "store_unavailable", "inside");
        }));
        tracing::warn!("outside");
    }

    #[test]
    fn text_lines_logged_inside_a_request_carry_its_id() {
        let lines = captured_lines(LogFormat::Text, None, || inside_and_outside("rid-1"));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].ends_with(r#"inside code="store_unavailable" request_id="rid-1""#),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("outside"), "{lines:?}");
        assert!(!lines[1].contains("request_id"), "{lines:?}");
    }

    #[test]
    fn json_lines_logged_inside_a_request_carry_its_id() {
        let lines = captured_lines(LogFormat::Json, None, || inside_and_outside("rid-2"));
        assert_eq!(lines.len(), 2, "{lines:?}");
        let inside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(inside["request_id"], "rid-2");
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["code"], "store_unavailable");
        assert_eq!(inside["level"], "WARN");
        let outside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(outside["message"], "outside");
        assert!(outside.get("request_id").is_none(), "{outside}");
    }

    #[test]
    fn a_client_request_id_cannot_forge_fields() {
        let text = captured_lines(LogFormat::Text, None, || inside_and_outside(r#"x" admin="yes"#));
        assert!(text[0].ends_with(r#"request_id="x\" admin=\"yes""#), "{text:?}");
        let json = captured_lines(LogFormat::Json, None, || inside_and_outside(r#"x","admin":"yes"#));
        let inside: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(inside["request_id"], r#"x","admin":"yes"#);
        assert!(inside.get("admin").is_none(), "{inside}");
    }

    #[test]
    fn rust_log_debug_shows_debug_lines() {
        let log = || tracing::debug!("detail");
        assert!(captured_lines(LogFormat::Text, None, log).is_empty());
        let lines = captured_lines(LogFormat::Text, Some("debug"), log);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("DEBUG") && lines[0].ends_with("detail"),
            "{lines:?}"
        );
        let lines = captured_lines(LogFormat::Json, Some("tessera_server=debug"), log);
        assert_eq!(lines.len(), 1, "{lines:?}");
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
