//! Log output to stderr, batched: access lines are gathered in memory and written at most
//! every [`FLUSH_EVERY`] (or when [`MAX_PENDING`] bytes are waiting), so a busy gateway
//! does not make one `write` system call per request. Warnings and errors are written at
//! once, with whatever was waiting before them, so nothing important waits and the order
//! is kept.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const MAX_PENDING: usize = 64 * 1024;

static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();
/// Set when the flusher thread could not start: then every line is written at once.
static UNBATCHED: AtomicBool = AtomicBool::new(false);

/// Set by [`install`]: 0 when `init_tracing` did not run, 1 text, 2 JSON.
static FORMAT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The format access lines are written in, when the binary set up logging.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Records that `tracing` writes through this module, in `format`.
pub(crate) fn install(format: Format) {
    let code = match format {
        Format::Text => 1,
        Format::Json => 2,
    };
    FORMAT.store(code, Ordering::Relaxed);
}

/// The access-line format, or `None` when logging does not go through this module.
pub(crate) fn format() -> Option<Format> {
    match FORMAT.load(Ordering::Relaxed) {
        1 => Some(Format::Text),
        2 => Some(Format::Json),
        _ => None,
    }
}

/// Appends one finished line (with its newline) to the batch.
pub(crate) fn append(line: &[u8]) {
    BatchedStderr.start();
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    pending.extend_from_slice(line);
    if pending.len() >= MAX_PENDING || UNBATCHED.load(Ordering::Relaxed) {
        write_out(&mut pending);
    }
}

/// The `MakeWriter` for `tracing_subscriber::fmt`.
#[derive(Clone, Copy, Default)]
pub(crate) struct BatchedStderr;

/// Writes everything waiting; called by the flusher, for warnings, and before exit.
pub fn flush() {
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    write_out(&mut pending);
}

fn write_out(pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    // Nowhere to report a failed log write; dropping the lines is all that is left.
    let _ = stderr.write_all(pending).and_then(|()| stderr.flush());
    pending.clear();
}

pub(crate) struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(bytes);
        if self.urgent || pending.len() >= MAX_PENDING || UNBATCHED.load(Ordering::Relaxed) {
            write_out(&mut pending);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        self.start();
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        self.start();
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl BatchedStderr {
    fn start(&self) {
        FLUSHER.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("wxgate-log".into())
                .spawn(|| loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush();
                });
            if spawned.is_err() {
                UNBATCHED.store(true, Ordering::Relaxed);
            }
        });
    }
}
