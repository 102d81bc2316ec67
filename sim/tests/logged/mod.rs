//! A holepunch run with the core's `tracing` output captured in memory, for tests that assert
//! on the decisions the core logs (shared by the simulator tests that read logs).

use std::io::Write;
use std::sync::{Arc, Mutex};

use hdht_sim::scenario::holepunch::{run_holepunch, HolepunchConfig, HolepunchRun};
use tracing_subscriber::fmt::MakeWriter;

/// Log lines captured in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Runs one holepunch with a subscriber for `filter` (an `EnvFilter` directive such as
/// `hdht_core=debug`); the run and its log.
pub fn run_logged(cfg: &HolepunchConfig, filter: &str) -> (HolepunchRun, String) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let run =
        tracing::subscriber::with_default(subscriber, || run_holepunch(cfg)).expect("valid config");
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).expect("UTF-8 log");
    (run, log)
}
