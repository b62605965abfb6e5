//! Progress bars that also report when stderr is not a terminal (CI logs, `nohup`, a journal):
//! there indicatif draws nothing, and a long embedding run (`classify train`, `kb ingest`) looked
//! hung for many minutes. Off a terminal the bar's line is printed plainly, the first one at once
//! and then at most one every `PLAIN_EVERY`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PLAIN_EVERY: Duration = Duration::from_secs(15);

/// A bar of `len` steps drawn with `template` (indicatif's syntax), hidden unless `show`.
pub fn bar(len: u64, template: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ");
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::term_like_with_hz(Box::new(PlainLines::new(PLAIN_EVERY, Box::new(std::io::stderr()))), 1))
    };
    bar.with_style(style)
}

/// A "terminal" that prints whole lines, throttled, and ignores cursor movement.
struct PlainLines {
    every: Duration,
    state: Mutex<(Option<Instant>, Box<dyn std::io::Write + Send>)>,
}

impl std::fmt::Debug for PlainLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainLines").field("every", &self.every).finish()
    }
}

impl PlainLines {
    fn new(every: Duration, out: Box<dyn std::io::Write + Send>) -> Self {
        Self { every, state: Mutex::new((None, out)) }
    }
}

impl TermLike for PlainLines {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let line = s.trim();
        if line.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0.is_some_and(|t| t.elapsed() < self.every) {
            return Ok(());
        }
        state.0 = Some(Instant::now());
        writeln!(state.1, "{line}")
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn off_a_terminal_the_first_line_is_printed_at_once_and_the_rest_throttled() {
        let out = Shared::default();
        let term = PlainLines::new(Duration::from_millis(200), Box::new(out.clone()));
        term.write_line("embedding [=>   ] 1/10").unwrap();
        term.write_line("embedding [==>  ] 2/10").unwrap();
        term.write_str("   ").unwrap();
        std::thread::sleep(Duration::from_millis(250));
        term.write_line("embedding [===> ] 3/10").unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "embedding [=>   ] 1/10\nembedding [===> ] 3/10\n");
    }

    #[test]
    fn a_bar_reports_through_a_plain_target() {
        let out = Shared::default();
        let bar = ProgressBar::with_draw_target(Some(4), ProgressDrawTarget::term_like_with_hz(Box::new(PlainLines::new(Duration::from_secs(60), Box::new(out.clone()))), 20));
        bar.set_style(ProgressStyle::with_template("embedding {pos}/{len}").unwrap());
        bar.inc(1);
        bar.tick();
        bar.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("embedding ") && text.contains("/4"), "{text:?}");
    }
}
