//! A saga's audit trail (`GET /v1/sagas/{id}/events`) drawn as a text timeline: one line per
//! event, with its time since the first event, the call's step, phase and attempt, its
//! outcome and HTTP status, its latency as a number and a bar, and what an operator did, who
//! asked and why.
//!
//! The marker column says what a line is without colour: `→` a call starts, `←` it ends,
//! `*` an operator acted, `!` the saga turned stuck or a callback was abandoned, `·` anything
//! else. With colour, failures are red, operator actions bold yellow and a commit green.

use std::time::SystemTime;

use sagas::api::{EventView, SagaEvents};

use crate::output;

/// Longest latency bar, in characters; the slowest call of the saga gets it.
const BAR_WIDTH: u64 = 20;
/// The latency a full bar stands for at least, in milliseconds, so that a saga whose calls
/// all took a millisecond or two does not draw them as long as a slow one.
const BAR_FLOOR_MS: u64 = 50;

/// Whether to colour the timeline: only when standard output is a terminal and `NO_COLOR` is
/// unset or empty (<https://no-color.org>).
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How a line is coloured, when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    /// As is.
    Plain,
    /// Something failed or needs a person: red.
    Failure,
    /// An operator acted: bold yellow.
    Operator,
    /// The saga committed: green.
    Success,
}

impl Tone {
    /// The ANSI escape that starts this tone; `None` for plain.
    fn escape(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Failure => Some("\x1b[31m"),
            Tone::Operator => Some("\x1b[1;33m"),
            Tone::Success => Some("\x1b[32m"),
        }
    }
}

/// One event as the columns of its line.
struct Line {
    /// `+12ms` since the first event.
    offset: String,
    /// `→`, `←`, `*`, `!` or `·`.
    marker: &'static str,
    /// The step name for a call, else the event type.
    what: String,
    /// Phase of a call.
    phase: String,
    /// Attempt of a call or callback (`#2`).
    attempt: String,
    /// Outcome and HTTP status (`ok 200`, `transient 500`), a decision, a final state.
    result: String,
    /// Latency of a finished call.
    latency: String,
    /// Latency bar, scaled to the slowest call.
    bar: String,
    /// Error, who acted and why.
    note: String,
    /// Colour of the whole line.
    tone: Tone,
}

/// The timeline of `events` as text, coloured with ANSI escapes when `colour` is set.
pub fn render(events: &SagaEvents, colour: bool) -> String {
    let mut text = format!(
        "saga {}: {} event{}\n",
        events.saga_id,
        events.events.len(),
        if events.events.len() == 1 { "" } else { "s" }
    );
    if events.events.is_empty() {
        return text;
    }
    let start = events.events.first().and_then(|e| parse_time(&e.at));
    let slowest = events
        .events
        .iter()
        .filter_map(|e| e.latency_ms)
        .max()
        .unwrap_or(0);
    let lines: Vec<Line> = events
        .events
        .iter()
        .map(|event| line(event, start, slowest))
        .collect();

    let mut table = output::table(&[
        "time", "", "event", "phase", "attempt", "result", "latency", "", "note",
    ]);
    for line in &lines {
        table.add_row(vec![
            line.offset.as_str(),
            line.marker,
            &line.what,
            &line.phase,
            &line.attempt,
            &line.result,
            &line.latency,
            &line.bar,
            &line.note,
        ]);
    }
    output::align_right(&mut table, &[0, 6]);
    let rendered = output::render(&mut table);
    let mut rows = rendered.lines();
    if let Some(header) = rows.next() {
        text.push_str(header);
        text.push('\n');
    }
    for (row, line) in rows.zip(&lines) {
        match line.tone.escape().filter(|_| colour) {
            Some(escape) => text.push_str(&format!("{escape}{row}\x1b[0m\n")),
            None => {
                text.push_str(row);
                text.push('\n');
            }
        }
    }
    text
}

/// The columns of one event's line.
fn line(event: &EventView, start: Option<SystemTime>, slowest: u64) -> Line {
    let offset = match (start, parse_time(&event.at)) {
        (Some(start), Some(at)) => {
            let ms = at.duration_since(start).map_or(0, |d| d.as_millis());
            offset(u64::try_from(ms).unwrap_or(u64::MAX))
        }
        _ => event.at.clone(),
    };
    let outcome = event.outcome.clone().unwrap_or_default();
    let result = match event.http_status {
        Some(status) if !outcome.is_empty() => format!("{outcome} {status}"),
        Some(status) => status.to_string(),
        None => outcome.clone(),
    };
    let is_call = matches!(event.kind.as_str(), "call_started" | "call_ended");
    let is_callback = event.kind.starts_with("callback_");
    let what = if is_call {
        event.step.clone().unwrap_or_default()
    } else if event.kind == "operated" {
        // An operator's request (its `outcome` is the action); the event after it says
        // what it did.
        "operator".to_string()
    } else if let Some(step) = &event.step {
        format!("{} {step}", event.kind)
    } else {
        event.kind.clone()
    };

    let mut notes = Vec::new();
    if let Some(resolution) = event.resolution {
        notes.push(format!("as {}", resolution.as_str()));
    }
    if let Some(error) = &event.error {
        // An abort's reason is also its `error`; say it once.
        if event.reason.as_deref() != Some(error.as_str()) {
            notes.push(error.clone());
        }
    }
    if let Some(by) = &event.by {
        notes.push(format!("by {by}"));
    }
    if let Some(reason) = &event.reason {
        notes.push(format!("reason: {reason:?}"));
    }

    let failed = matches!(
        outcome.as_str(),
        "rejected" | "transient" | "not_sent" | "refused" | "failed" | "abort" | "aborted"
    );
    let (marker, tone) = if event.by.is_some() {
        ("*", Tone::Operator)
    } else if event.kind == "stuck" || event.kind == "callback_abandoned" {
        ("!", Tone::Failure)
    } else if event.kind == "call_started" || event.kind == "callback_started" {
        ("→", Tone::Plain)
    } else if event.kind == "call_ended" || event.kind == "callback_ended" {
        ("←", if failed { Tone::Failure } else { Tone::Plain })
    } else if failed {
        ("·", Tone::Failure)
    } else if outcome == "committed" {
        ("·", Tone::Success)
    } else {
        ("·", Tone::Plain)
    };

    Line {
        offset,
        marker,
        what,
        phase: event
            .phase
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        attempt: match event.attempt {
            Some(n) if is_call || is_callback => format!("#{n}"),
            _ => String::new(),
        },
        result: if event.kind == "call_started" || event.kind == "callback_started" {
            "started".to_string()
        } else {
            result
        },
        latency: event
            .latency_ms
            .map(|ms| output::millis(ms as f64))
            .unwrap_or_default(),
        bar: event
            .latency_ms
            .map(|ms| bar(ms, slowest))
            .unwrap_or_default(),
        note: notes.join("  "),
        tone,
    }
}

/// `ms` as a bar of up to [`BAR_WIDTH`] blocks, the slowest call (or [`BAR_FLOOR_MS`]) the
/// longest; at least one block for any call that took time.
fn bar(ms: u64, slowest: u64) -> String {
    if ms == 0 {
        return String::new();
    }
    let full = slowest.max(BAR_FLOOR_MS);
    let blocks = ms
        .saturating_mul(BAR_WIDTH)
        .div_ceil(full)
        .clamp(1, BAR_WIDTH);
    "█".repeat(blocks as usize)
}

/// An event time (RFC 3339, UTC); `None` when it does not parse.
fn parse_time(at: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(at).ok()
}

/// Time since the first event: `+12ms`, `+1.204s`, `+2m03.100s`, `+1h02m03s`.
fn offset(ms: u64) -> String {
    let (s, ms_part) = (ms / 1_000, ms % 1_000);
    if ms < 1_000 {
        format!("+{ms}ms")
    } else if s < 60 {
        format!("+{s}.{ms_part:03}s")
    } else if s < 3_600 {
        format!("+{}m{:02}.{ms_part:03}s", s / 60, s % 60)
    } else {
        format!("+{}h{:02}m{:02}s", s / 3_600, s % 3_600 / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagas::api::Resolution;
    use sagas::wire::Phase;

    fn event(seq: u64, at: &str, kind: &str) -> EventView {
        EventView::new(seq, at, kind)
    }

    #[test]
    fn offsets_read_well() {
        assert_eq!(offset(0), "+0ms");
        assert_eq!(offset(12), "+12ms");
        assert_eq!(offset(1_204), "+1.204s");
        assert_eq!(offset(123_100), "+2m03.100s");
        assert_eq!(offset(3_723_000), "+1h02m03s");
    }

    #[test]
    fn bars_scale_to_the_slowest_call() {
        assert_eq!(bar(0, 100), "");
        assert_eq!(bar(100, 100).chars().count(), 20);
        assert_eq!(bar(50, 100).chars().count(), 10);
        assert_eq!(bar(1, 1_000).chars().count(), 1);
        // Fast calls stay short.
        assert_eq!(bar(2, 2).chars().count(), 1);
    }

    #[test]
    fn a_timeline_has_a_line_per_event() {
        let mut ended = event(2, "2026-11-22T22:19:02.464Z", "call_ended");
        ended.step = Some("freeze_funds".into());
        ended.phase = Some(Phase::Try);
        ended.attempt = Some(1);
        ended.outcome = Some("transient".into());
        ended.http_status = Some(500);
        ended.latency_ms = Some(12);
        ended.error = Some("HTTP 500: boom".into());
        let mut operated = event(3, "2026-11-22T22:19:03.652Z", "operated");
        operated.outcome = Some("resolve".into());
        operated.by = Some("alice".into());
        operated.reason = Some("refund issued".into());
        let mut resolved = event(4, "2026-11-22T22:19:03.652Z", "step_resolved");
        resolved.step = Some("freeze_funds".into());
        resolved.resolution = Some(Resolution::Compensated);
        let events = SagaEvents {
            saga_id: "s1".into(),
            events: vec![
                event(1, "2026-11-22T22:19:02.452Z", "created"),
                ended,
                operated,
                resolved,
            ],
        };
        let text = render(&events, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(lines[0], "saga s1: 4 events");
        assert!(lines[2].starts_with("   +0ms  ·  created"), "{text}");
        assert!(
            lines[3].contains("←  freeze_funds")
                && lines[3].contains("try")
                && lines[3].contains("#1")
                && lines[3].contains("transient 500")
                && lines[3].contains("12ms")
                && lines[3].contains(&"█".repeat(5))
                && lines[3].ends_with("HTTP 500: boom"),
            "{text}"
        );
        assert!(
            lines[4].contains("*  operator")
                && lines[4].contains("resolve")
                && lines[4].ends_with(r#"by alice  reason: "refund issued""#),
            "{text}"
        );
        assert!(lines[4].starts_with("+1.200s"), "{text}");
        assert!(
            lines[5].contains("·  step_resolved freeze_funds")
                && lines[5].ends_with("as compensated"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        assert!(render(&events, true).contains("\x1b[1;33m"));
    }
}
