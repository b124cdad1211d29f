//! Free-form SPARQL in child processes: each query runs in a worker with a memory limit, killed when its time is up.
//!
//! The evaluator checks its time limit only when it reads the store, so a
//! query that multiplies and sorts inline data runs and allocates unchecked.
//! A worker process bounds both for real: the kernel refuses it memory past
//! `RLIMIT_DATA` (the worker dies, the query fails), and the node kills it
//! when the query's time is up. Workers are reused while they live; each
//! holds a copy of the catalog, reloaded when the catalog changed.
//!
//! Frames on the worker's stdin and stdout are a 4-byte little-endian length
//! and JSON.

use intercloud_actors::catalog::runner::{CancellationToken, SparqlRunner};
use intercloud_actors::catalog::{Answer, Catalog, CatalogError, CatalogLimits};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The hidden subcommand a worker runs as.
pub const SUBCOMMAND: &str = "sparql-worker";

/// Largest frame either side accepts (a catalog dump, or an answer).
const MAX_FRAME: usize = 512 << 20;

#[derive(Serialize, Deserialize)]
enum ToWorker {
    /// Replace the catalog with this N-Quads dump.
    Load(String),
    Query(String),
}

#[derive(Serialize, Deserialize)]
enum FromWorker {
    Loaded,
    Answer(Answer),
    Failed(String),
}

fn write_frame(w: &mut impl Write, v: &impl Serialize) -> std::io::Result<()> {
    let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// Why a worker process could not serve.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("setrlimit: {0}")]
    Limit(std::io::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("writing to the node: {0}")]
    Write(std::io::Error),
}

/// The worker's side: limits its own memory, then answers frames on stdin
/// until it closes.
pub fn serve(memory_mb: u64, max_results: usize, query_time: Duration) -> Result<(), WorkerError> {
    let bytes = memory_mb.saturating_mul(1 << 20);
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass; no memory is shared.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &lim) } != 0 {
        return Err(WorkerError::Limit(std::io::Error::last_os_error()));
    }
    let catalog = Catalog::new(CatalogLimits {
        max_description_bytes: usize::MAX,
        max_results,
        query_time,
    })?;
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut out = std::io::stdout().lock();
    loop {
        let msg: ToWorker = match read_frame(&mut input) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let reply = match msg {
            ToWorker::Load(nq) => match catalog.load_dump(nq.as_bytes()) {
                Ok(()) => FromWorker::Loaded,
                Err(e) => FromWorker::Failed(e.to_string()),
            },
            ToWorker::Query(q) => match catalog.sparql(&q) {
                Ok(a) => FromWorker::Answer(a),
                Err(e) => FromWorker::Failed(e.to_string()),
            },
        };
        write_frame(&mut out, &reply).map_err(WorkerError::Write)?;
    }
}

/// One live worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// Frames from its stdout, read by a thread of its own (None: it ended).
    replies: mpsc::Receiver<Option<FromWorker>>,
    /// The catalog generation it holds.
    generation: Option<u64>,
}

impl Worker {
    fn spawn(settings: &WorkerSettings) -> Result<Worker, CatalogError> {
        let exe = std::env::current_exe()
            .map_err(|e| CatalogError::Evaluation(format!("query worker: {e}")))?;
        let mut child = Command::new(exe)
            .arg(SUBCOMMAND)
            .arg("--memory-mb")
            .arg(settings.memory_mb.to_string())
            .arg("--max-results")
            .arg(settings.max_results.to_string())
            .arg("--query-ms")
            .arg(settings.query_time.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CatalogError::Evaluation(format!("query worker: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("sparql-worker-reader".into())
            .spawn(move || loop {
                match read_frame::<FromWorker>(&mut stdout) {
                    Ok(f) => {
                        if tx.send(Some(f)).is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                }
            })
            .map_err(|e| CatalogError::Evaluation(format!("query worker: {e}")))?;
        Ok(Worker {
            child,
            stdin,
            replies,
            generation: None,
        })
    }

    /// Sends `msg` and waits for the reply until `deadline` or `cancel`.
    fn ask(
        &mut self,
        msg: &ToWorker,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<FromWorker, Ended> {
        write_frame(&mut self.stdin, msg).map_err(|_| Ended::Died)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || cancel.is_cancelled() {
                return Err(Ended::TimedOut);
            }
            match self
                .replies
                .recv_timeout(left.min(Duration::from_millis(50)))
            {
                Ok(Some(r)) => return Ok(r),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Ended::Died),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Ends the process (our own child, by its handle) and reaps it.
    fn kill(mut self) -> Option<std::process::ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

enum Ended {
    TimedOut,
    Died,
}

/// The limits of the workers.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Memory (RLIMIT_DATA) of one worker, in MiB.
    pub memory_mb: u64,
    pub max_results: usize,
    pub query_time: Duration,
    /// Idle workers kept for the next queries.
    pub keep_idle: usize,
}

/// Runs queries in worker processes.
pub struct WorkerPool {
    settings: WorkerSettings,
    idle: Mutex<Vec<Worker>>,
}

impl WorkerPool {
    pub fn new(settings: WorkerSettings) -> WorkerPool {
        WorkerPool {
            settings,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<Worker, CatalogError> {
        let w = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match w {
            Some(w) => Ok(w),
            None => Worker::spawn(&self.settings),
        }
    }

    fn give_back(&self, w: Worker) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.settings.keep_idle {
            idle.push(w);
        } else {
            drop(idle);
            w.kill();
        }
    }

    fn failed(&self, w: Worker, how: Ended) -> CatalogError {
        match how {
            Ended::TimedOut => {
                w.kill();
                tracing::warn!(limit = ?self.settings.query_time, "SPARQL query past its time limit: its worker was killed");
                CatalogError::Timeout(self.settings.query_time)
            }
            Ended::Died => {
                let status = w.kill();
                tracing::warn!(
                    ?status,
                    memory_mb = self.settings.memory_mb,
                    "SPARQL query worker ended (past its memory limit)"
                );
                CatalogError::Evaluation(format!(
                    "the query went past its memory limit of {} MiB",
                    self.settings.memory_mb
                ))
            }
        }
    }
}

impl SparqlRunner for WorkerPool {
    fn run(
        &self,
        catalog: &Catalog,
        query: &str,
        cancel: &CancellationToken,
    ) -> Result<Answer, CatalogError> {
        let mut w = self.take()?;
        let generation = catalog.generation();
        if w.generation != Some(generation) {
            // Loading a copy does not count against the query's time.
            let dump = String::from_utf8(catalog.dump()?)
                .map_err(|e| CatalogError::Evaluation(e.to_string()))?;
            let load_until = Instant::now() + Duration::from_secs(120);
            match w.ask(&ToWorker::Load(dump), load_until, &CancellationToken::new()) {
                Ok(FromWorker::Loaded) => w.generation = Some(generation),
                Ok(FromWorker::Failed(e)) => {
                    w.kill();
                    return Err(CatalogError::Evaluation(format!("query worker: {e}")));
                }
                Ok(FromWorker::Answer(_)) => {
                    w.kill();
                    return Err(CatalogError::Evaluation("query worker out of step".into()));
                }
                Err(how) => return Err(self.failed(w, how)),
            }
        }
        let deadline = Instant::now() + self.settings.query_time;
        match w.ask(&ToWorker::Query(query.to_string()), deadline, cancel) {
            Ok(FromWorker::Answer(a)) => {
                self.give_back(w);
                Ok(a)
            }
            Ok(FromWorker::Failed(e)) => {
                self.give_back(w);
                Err(CatalogError::Evaluation(e))
            }
            Ok(FromWorker::Loaded) => {
                w.kill();
                Err(CatalogError::Evaluation("query worker out of step".into()))
            }
            Err(how) => Err(self.failed(w, how)),
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        for w in self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            w.kill();
        }
    }
}
