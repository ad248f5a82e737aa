//! How a command's result reaches the user: one [`Report`] a command, rendered as text or,
//! with `--json`, as the JSON its `Serialize` gives; its verdict picks the exit status.

use std::io::Write;

use serde::Serialize;

use super::ExitStatus;

/// What a command prints when it is done.
pub trait Report: Serialize {
    /// The human rendering; an empty string prints nothing.
    fn text(&self) -> String;

    /// Whether the command did what it was asked (false exits 1, after printing).
    fn ok(&self) -> bool {
        true
    }
}

/// Prints `report` in the chosen form and returns the exit status its verdict gives.
pub fn emit(json: bool, report: &impl Report) -> ExitStatus {
    let text = if json {
        serde_json::to_string_pretty(report).expect("reports serialise")
    } else {
        report.text()
    };
    if !text.is_empty() {
        print_line(&text);
    }
    if report.ok() {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    }
}

/// Writes one line to stdout. A reader that went away (`cairn snapshots | head -1`) is not
/// an error of the command's: what was done stays done, so the line is dropped, not
/// panicked over as `println!` would.
pub fn print_line(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("warning: writing to stdout: {e}");
    }
}
