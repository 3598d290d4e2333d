//! Owns the log writer: lines are appended to a shared buffer (a lock held for one
//! memcpy, never a syscall per line), and one background thread writes the buffer out in
//! batches. While lines keep coming the thread runs on a timer, writing out every
//! `BATCH_WINDOW` what gathered; after a window with no line it sleeps until the next
//! line wakes it. So a busy process pays one wake-up and one `write` per window and no
//! line but the first after a quiet window wakes a thread (a wake-up on the line's, and
//! so the call's, path), and an idle one pays nothing. If the output cannot keep up and
//! `MAX_PENDING` bytes are waiting, new lines are dropped (never blocking a request)
//! and counted, and a `log.dropped` line says how many once the output drains.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer thread lets lines gather before writing them. At 20 ms a worker
/// serving 50 calls a second woke its writer thread about once per call (1.3 context
/// switches per call); 100 ms cut the worker's CPU per call by about 15% (see
/// docs/BENCHMARKS.md) and still shows a line within a tenth of a second.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Bytes waiting for the output beyond which new lines are dropped.
pub const MAX_PENDING: usize = 16 * 1024 * 1024;

struct State {
    pending: Vec<u8>,
    dropped: u64,
    closing: bool,
    /// The thread waits for a line with no deadline: the next line wakes it.
    asleep: bool,
    /// Wake-ups lines have issued (for tests).
    wakes: u64,
}

struct Shared {
    /// A std Mutex: held to append one line or to swap the buffer, never across I/O.
    state: Mutex<State>,
    wake: Condvar,
    window: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle lines are written through; cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Owns the writer thread; dropping it writes what is pending and stops the thread.
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`; `service` names the process on the writer's own
/// `log.dropped` line, like on every other line.
pub fn batch_writer<W: Write + Send + 'static>(
    service: &'static str,
    out: W,
) -> (BatchWriter, WriterGuard) {
    batch_writer_with_window(service, out, BATCH_WINDOW)
}

fn batch_writer_with_window<W: Write + Send + 'static>(
    service: &'static str,
    out: W,
    window: Duration,
) -> (BatchWriter, WriterGuard) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: Vec::with_capacity(64 * 1024),
            dropped: 0,
            closing: false,
            asleep: false,
            wakes: 0,
        }),
        wake: Condvar::new(),
        window,
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || write_out(&shared, service, out)
        })
        .ok();
    (
        BatchWriter {
            shared: shared.clone(),
        },
        WriterGuard { shared, thread },
    )
}

impl BatchWriter {
    /// Queues one complete line (with its `\n`).
    pub fn write_line(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        if state.pending.len() + line.len() > MAX_PENDING {
            state.dropped += 1;
            return;
        }
        state.pending.extend_from_slice(line);
        // Only a sleeping thread is woken, once; one on its timer finds the line itself.
        let wake = std::mem::take(&mut state.asleep);
        if wake {
            state.wakes += 1;
        }
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_out<W: Write>(shared: &Shared, service: &'static str, mut out: W) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Whether the last window brought nothing: then the thread sleeps until a line.
    let mut quiet = true;
    loop {
        let mut state = shared.lock();
        if quiet {
            while state.pending.is_empty() && state.dropped == 0 && !state.closing {
                state.asleep = true;
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.asleep = false;
        }
        if !state.closing {
            // Let the batch fill; a closing guard cuts the window short.
            state = shared
                .wake
                .wait_timeout_while(state, shared.window, |s| !s.closing)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        std::mem::swap(&mut state.pending, &mut batch);
        let dropped = std::mem::take(&mut state.dropped);
        let closing = state.closing;
        drop(state);
        quiet = batch.is_empty() && dropped == 0;
        if !quiet {
            let _ = out.write_all(&batch);
            if dropped > 0 {
                let _ = out.write_all(&dropped_line(service, dropped));
            }
            let _ = out.flush();
            batch.clear();
        }
        if closing && shared.lock().pending.is_empty() {
            return;
        }
    }
}

/// The line that says how many lines were dropped, with the fields every line has.
fn dropped_line(service: &str, dropped: u64) -> Vec<u8> {
    let mut line = b"{\"timestamp\":".to_vec();
    super::write_rfc3339_now(&mut line);
    line.extend_from_slice(b",\"level\":\"WARN\",\"service\":");
    let _ = serde_json::to_writer(&mut line, service);
    let _ = writeln!(
        line,
        r#","event":"log.dropped","dropped":{dropped},"message":"log output could not keep up; lines were dropped"}}"#
    );
    line
}

/// `io::Write` for `tracing_subscriber::fmt` (text format): collects one event's bytes
/// and queues them as one line when dropped.
pub struct EventWriter {
    writer: BatchWriter,
    line: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.writer.write_line(&self.line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            writer: self.clone(),
            line: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the writer thread owns its clone.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("sink").clone()).expect("utf8")
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_order_per_thread() {
        let sink = Sink::default();
        let (writer, guard) = batch_writer("svc", sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        writer.write_line(format!("{{\"t\":{t},\"i\":{i}}}\n").as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread");
        }
        drop(guard);
        let text = sink.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line whole"))
            .collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let seen: Vec<u64> = lines
                .iter()
                .filter(|l| l["t"] == t)
                .map(|l| l["i"].as_u64().expect("i"))
                .collect();
            assert_eq!(seen, (0..2000).collect::<Vec<u64>>());
        }
    }

    #[test]
    fn a_line_is_written_within_the_batch_window_without_a_flush() {
        let sink = Sink::default();
        let (writer, _guard) = batch_writer("svc", sink.clone());
        writer.write_line(b"one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(sink.text(), "one\n");
    }

    #[test]
    fn lines_that_keep_coming_wake_the_thread_once_and_it_sleeps_after_a_quiet_window() {
        // A long window, so that the test's own steps always fit in one.
        let window = Duration::from_millis(1000);
        let sink = Sink::default();
        let (writer, _guard) = batch_writer_with_window("svc", sink.clone(), window);
        let wakes = || writer.shared.lock().wakes;
        let asleep = || writer.shared.lock().asleep;
        let wait = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "never: {what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        wait("the thread asleep after its first, empty window", &|| {
            asleep()
        });
        writer.write_line(b"one\n");
        assert_eq!(wakes(), 1, "the first line wakes the thread");
        wait("line one written", &|| sink.text() == "one\n");
        // The thread is now in its next window, on its timer: a line does not wake it.
        writer.write_line(b"two\n");
        assert_eq!(wakes(), 1, "a line during a window woke the thread");
        wait("line two written", &|| sink.text() == "one\ntwo\n");
        // A window without a line puts it back to sleep; the next line wakes it again.
        wait("the thread asleep after a quiet window", &|| asleep());
        writer.write_line(b"three\n");
        assert_eq!(wakes(), 2);
        wait("line three written", &|| sink.text() == "one\ntwo\nthree\n");
    }

    /// An output that blocks until released, like a full pipe.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Sink);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, released) = &*self.0;
            let mut open = lock.lock().map_err(|_| std::io::ErrorKind::Other)?;
            while !*open {
                open = released.wait(open).map_err(|_| std::io::ErrorKind::Other)?;
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_instead_of_blocking_and_says_so() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (writer, guard) = batch_writer("svc", Stuck(gate.clone(), sink.clone()));
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        let started = std::time::Instant::now();
        // Twice what may wait: the second half must be dropped, quickly.
        for _ in 0..(2 * MAX_PENDING / line.len()) {
            writer.write_line(&line);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "writing blocked"
        );
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        drop(guard);
        let text = sink.text();
        let dropped_line = text
            .lines()
            .find(|l| l.contains("log.dropped"))
            .expect("a log.dropped line");
        let notice: serde_json::Value = serde_json::from_str(dropped_line).expect("json");
        assert_eq!(
            (&notice["service"], &notice["event"], &notice["level"]),
            (&"svc".into(), &"log.dropped".into(), &"WARN".into()),
            "the fields every line has: {notice}"
        );
        assert!(notice["timestamp"].is_string(), "{notice}");
        let dropped = notice["dropped"].as_u64().expect("count");
        let written = text.lines().filter(|l| l.starts_with('x')).count() as u64;
        assert_eq!(written + dropped, (2 * MAX_PENDING / line.len()) as u64);
        assert!(
            dropped > 0 && written > 0,
            "written {written}, dropped {dropped}"
        );
    }
}
