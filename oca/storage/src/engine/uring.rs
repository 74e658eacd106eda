//! The io_uring engine: `READ` and `OPENAT` on dedicated ring threads (the `io-uring` crate).
//!
//! # Shape
//!
//! Each ring thread owns one `IoUring`, a slab of operations in flight and a local backlog.
//! Callers (tokio workers) never touch the ring: they push a [`Request`] onto the ring's
//! mutex-protected queue, wake the thread, and await a tokio oneshot that the ring thread
//! completes.
//!
//! # Waking the ring thread
//!
//! The ring thread keeps a `READ` of an eventfd pending *on its own ring*, so it has exactly
//! one place where it sleeps — `io_uring_enter(min_complete = 1)` — and wakes for either a
//! disk completion or a new request. A condvar or channel would need a second wait point
//! (and a timeout or a busy loop to watch both), and `register_eventfd` works the other way
//! round (the ring notifying an eventfd). To spare syscalls, a `notified` flag coalesces
//! wakes: only the submitter that flips it from false to true writes the eventfd; the ring
//! thread clears it when the eventfd read completes, before draining the queue, so a request
//! is either seen by that drain or its submitter writes again.
//!
//! # Ownership and cancellation
//!
//! Everything an SQE points at (the pooled buffer, the `CString` path, the `Arc<File>` whose
//! fd the kernel reads, the eventfd read buffer) is owned by the ring thread from submission
//! until its CQE is reaped. A caller dropping its future only drops the oneshot receiver:
//! the read still completes, the send fails, and the buffer returns to the pool. Requests
//! whose receiver is already gone when they reach the ring are not submitted at all.
//!
//! # Shutdown
//!
//! Dropping the engine sets `shutdown`, writes the eventfd and joins the threads. A ring
//! thread stops re-arming its eventfd read, finishes its backlog and every operation in
//! flight, and exits only when nothing is left in the kernel, so the ring is never closed
//! under an operation that could still write into freed memory. If `io_uring_enter` fails
//! for good (it should not), the thread fails all requests and deliberately leaks the memory
//! of operations still in flight rather than free it under the kernel.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::oneshot;

use super::{EngineKind, EngineOptions, IoEngine, IoFuture};
use crate::error::StorageError;
use crate::pool::{BufferPool, PoolBuf, PoolStats};

/// `user_data` of the eventfd read; slab indices are always smaller.
const EVENTFD_TOKEN: u64 = u64::MAX;
/// `EINTR`/`EAGAIN` completions retried per operation before giving up.
const MAX_RETRIES: u32 = 1000;
/// Bounds of `ring_entries`.
const MIN_ENTRIES: u32 = 2;
const MAX_ENTRIES: u32 = 32768;

fn ready<T: Send + 'static>(result: io::Result<T>) -> IoFuture<T> {
    Box::pin(std::future::ready(result))
}

fn stopped() -> io::Error {
    io::Error::other("the io_uring engine is shut down")
}

/// Explains a failed `io_uring_setup`.
fn setup_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            format!("io_uring_setup: {e} (kernel without io_uring, or a seccomp filter)")
        }
        Some(libc::EPERM) => format!(
            "io_uring_setup: {e} (disabled by the kernel.io_uring_disabled sysctl or a seccomp filter; \
             systemd units need SystemCallFilter=@io_uring)"
        ),
        _ => format!("io_uring_setup: {e}"),
    }
}

/// Submits a `NOP`, waits for it, and checks that the opcodes this engine uses exist.
fn check_ring(ring: &mut IoUring) -> Result<(), String> {
    let nop = opcode::Nop::new().build().user_data(0);
    // SAFETY: a NOP references no memory.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| "the submission queue of a fresh ring is full".to_string())?;
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("io_uring_enter: {e}")),
        }
    }
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| "no completion for a NOP".to_string())?;
    if cqe.result() < 0 {
        return Err(format!(
            "NOP failed: {}",
            io::Error::from_raw_os_error(-cqe.result())
        ));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e} (kernel older than 5.6?)"))?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::OpenAt::CODE, "OPENAT"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel does not support IORING_OP_{name}"));
        }
    }
    Ok(())
}

pub(super) fn probe() -> Result<(), String> {
    let mut ring = IoUring::new(4).map_err(|e| setup_error(&e))?;
    check_ring(&mut ring)
}

/// What a caller asks a ring thread to do.
enum Request {
    Read {
        file: Arc<File>,
        offset: u64,
        len: usize,
        tx: oneshot::Sender<io::Result<Bytes>>,
    },
    Open {
        path: CString,
        flags: i32,
        tx: oneshot::Sender<io::Result<Arc<File>>>,
    },
    Write {
        file: Arc<File>,
        offset: u64,
        data: Bytes,
        tx: oneshot::Sender<io::Result<()>>,
    },
    Fsync {
        file: Arc<File>,
        tx: oneshot::Sender<io::Result<()>>,
    },
}

impl Request {
    fn receiver_gone(&self) -> bool {
        match self {
            Request::Read { tx, .. } => tx.is_closed(),
            Request::Open { tx, .. } => tx.is_closed(),
            // Writes and fsyncs run even when nobody waits: a caller that gave up still
            // removes its temp file, and half-done writes are harmless there.
            Request::Write { .. } | Request::Fsync { .. } => false,
        }
    }

    fn fail(self, err: io::Error) {
        // The receiver may be gone; nothing to do then.
        match self {
            Request::Read { tx, .. } => drop(tx.send(Err(err))),
            Request::Open { tx, .. } => drop(tx.send(Err(err))),
            Request::Write { tx, .. } | Request::Fsync { tx, .. } => drop(tx.send(Err(err))),
        }
    }
}

/// State shared by a ring thread and the submitters.
struct Shared {
    queue: Mutex<VecDeque<Request>>,
    /// Blocking eventfd: io_uring answers `EAGAIN` instead of waiting on an `O_NONBLOCK` one.
    /// A write never blocks in practice: the counter stays tiny thanks to `notified`.
    efd: EventFd,
    /// A wake is pending (the eventfd was written and the ring thread has not consumed it).
    notified: AtomicBool,
    shutdown: AtomicBool,
    /// Set (under the queue lock) when the ring thread has stopped taking requests.
    dead: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Request>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, req: Request) -> io::Result<()> {
        {
            let mut queue = self.queue();
            if self.dead.load(Ordering::SeqCst) {
                return Err(stopped());
            }
            queue.push_back(req);
        }
        if !self.notified.swap(true, Ordering::SeqCst) {
            self.wake();
        }
        Ok(())
    }

    fn wake(&self) {
        loop {
            match self.efd.write(1) {
                Ok(_) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot wake the io_uring thread");
                    return;
                }
            }
        }
    }

    /// Marks the ring thread gone and fails whatever is still queued.
    fn close(&self) {
        let left: Vec<Request> = {
            let mut queue = self.queue();
            self.dead.store(true, Ordering::SeqCst);
            queue.drain(..).collect()
        };
        for req in left {
            req.fail(stopped());
        }
    }
}

struct RingHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    tid: i32,
}

impl RingHandle {
    fn signal_shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.notified.store(true, Ordering::SeqCst);
        self.shared.wake();
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("an io_uring thread panicked");
        }
    }
}

impl Drop for RingHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.signal_shutdown();
            self.join();
        }
    }
}

/// Reads and opens through io_uring on `ring_threads` dedicated threads.
///
/// Dropping the engine waits for the operations in flight to complete and joins the threads.
pub struct UringEngine {
    rings: Vec<RingHandle>,
    next: AtomicUsize,
    pool: BufferPool,
    cached: super::cached::CachedReader,
}

impl UringEngine {
    /// Creates the rings (each proven with a `NOP`) and starts their threads.
    /// [`StorageError::Unavailable`] says why io_uring cannot be used.
    pub fn new(opts: &EngineOptions) -> Result<UringEngine, StorageError> {
        opts.validate()?;
        let entries = opts.ring_entries.clamp(MIN_ENTRIES, MAX_ENTRIES);
        let pool = BufferPool::new(opts.buffer_size, opts.pooled_buffers);
        let mut rings = Vec::with_capacity(opts.ring_threads);
        for index in 0..opts.ring_threads {
            // On error, the rings already started are shut down by RingHandle's Drop.
            rings.push(start_ring(index, entries, &pool)?);
        }
        Ok(UringEngine {
            rings,
            next: AtomicUsize::new(0),
            pool,
            cached: super::cached::CachedReader::new(opts.page_cache_fast_path),
        })
    }

    /// The engine's buffer pool.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Linux thread ids of the ring threads (for diagnostics and tests).
    pub fn ring_thread_ids(&self) -> Vec<i32> {
        self.rings.iter().map(|r| r.tid).collect()
    }

    fn open_with(&self, path: PathBuf, flags: i32) -> IoFuture<Arc<File>> {
        let path = match CString::new(path.into_os_string().into_vec()) {
            Ok(path) => path,
            Err(_) => {
                return ready(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "path contains a NUL byte",
                )));
            }
        };
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.ring().push(Request::Open { path, flags, tx }) {
            return ready(Err(e));
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }

    fn ring(&self) -> &Shared {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.rings.len().max(1);
        &self.rings[i].shared
    }
}

fn start_ring(index: usize, entries: u32, pool: &BufferPool) -> Result<RingHandle, StorageError> {
    let mut ring = IoUring::builder()
        .build(entries)
        .map_err(|e| StorageError::Unavailable(setup_error(&e)))?;
    check_ring(&mut ring).map_err(StorageError::Unavailable)?;
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .map_err(|e| StorageError::Unavailable(format!("eventfd: {e}")))?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        efd,
        notified: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        dead: AtomicBool::new(false),
    });
    // One slot of the submission queue stays for the eventfd read; the completion queue is
    // twice as large, so it never overflows either.
    let capacity = (ring.params().sq_entries() as usize)
        .saturating_sub(1)
        .max(1);
    let worker = Worker {
        ring,
        shared: Arc::clone(&shared),
        pool: pool.clone(),
        ops: Vec::new(),
        free_slots: Vec::new(),
        in_flight: 0,
        capacity,
        backlog: VecDeque::new(),
        reaped: Vec::new(),
        efd_buf: Box::new([0u8; 8]),
        efd_armed: false,
    };
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("oca-uring-{index}"))
        .spawn(move || {
            // SAFETY: gettid has no preconditions and cannot fail.
            let tid = unsafe { libc::gettid() };
            let _ = tid_tx.send(tid);
            worker.run();
        })
        .map_err(|e| StorageError::Unavailable(format!("cannot start an io_uring thread: {e}")))?;
    let tid = tid_rx.recv().unwrap_or(0);
    Ok(RingHandle {
        shared,
        thread: Some(thread),
        tid,
    })
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // Signal every ring first so they drain in parallel, then join them.
        for ring in &self.rings {
            ring.signal_shutdown();
        }
        for ring in &mut self.rings {
            ring.join();
        }
    }
}

impl fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringEngine")
            .field("rings", &self.rings.len())
            .field("pool", &self.pool)
            .finish()
    }
}

impl IoEngine for UringEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::IoUring
    }

    fn open(&self, path: PathBuf) -> IoFuture<Arc<File>> {
        self.open_with(path, libc::O_RDONLY | libc::O_CLOEXEC)
    }

    fn create(&self, path: PathBuf) -> IoFuture<Arc<File>> {
        self.open_with(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
        )
    }

    fn write_at(&self, file: Arc<File>, offset: u64, data: Bytes) -> IoFuture<()> {
        if data.is_empty() {
            return ready(Ok(()));
        }
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset does not fit an off_t",
            )));
        }
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.ring().push(Request::Write {
            file,
            offset,
            data,
            tx,
        }) {
            return ready(Err(e));
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }

    fn fsync(&self, file: Arc<File>) -> IoFuture<()> {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.ring().push(Request::Fsync { file, tx }) {
            return ready(Err(e));
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }

    fn read_at(&self, file: Arc<File>, offset: u64, len: usize) -> IoFuture<Bytes> {
        if len == 0 {
            return ready(Ok(Bytes::new()));
        }
        if len > self.pool.buffer_size() {
            return ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "read of {len} bytes exceeds the buffer size {}",
                    self.pool.buffer_size()
                ),
            )));
        }
        // io_uring reads at the file position when the offset is -1 (u64::MAX): refuse
        // offsets that do not fit an off_t.
        if offset > i64::MAX as u64 {
            return ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset does not fit an off_t",
            )));
        }
        if let Some(r) = self.cached.try_read(&self.pool, &file, offset, len) {
            return ready(r);
        }
        let (tx, rx) = oneshot::channel();
        let req = Request::Read {
            file,
            offset,
            len,
            tx,
        };
        if let Err(e) = self.ring().push(req) {
            return ready(Err(e));
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }

    fn buffer_size(&self) -> usize {
        self.pool.buffer_size()
    }

    fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    fn page_cache_reads(&self) -> u64 {
        self.cached.hits()
    }
}

/// An operation owned by the ring thread while the kernel may touch its memory.
enum Op {
    Read {
        file: Arc<File>,
        buf: PoolBuf,
        offset: u64,
        len: usize,
        done: usize,
        retries: u32,
        tx: oneshot::Sender<io::Result<Bytes>>,
    },
    Open {
        path: CString,
        flags: i32,
        retries: u32,
        tx: oneshot::Sender<io::Result<Arc<File>>>,
    },
    Write {
        file: Arc<File>,
        data: Bytes,
        offset: u64,
        done: usize,
        retries: u32,
        tx: oneshot::Sender<io::Result<()>>,
    },
    Fsync {
        file: Arc<File>,
        retries: u32,
        tx: oneshot::Sender<io::Result<()>>,
    },
}

impl Op {
    fn receiver_gone(&self) -> bool {
        match self {
            Op::Read { tx, .. } => tx.is_closed(),
            Op::Open { tx, .. } => tx.is_closed(),
            Op::Write { .. } | Op::Fsync { .. } => false,
        }
    }

    fn fail(self, err: io::Error) {
        match self {
            Op::Read { tx, .. } => drop(tx.send(Err(err))),
            Op::Open { tx, .. } => drop(tx.send(Err(err))),
            Op::Write { tx, .. } | Op::Fsync { tx, .. } => drop(tx.send(Err(err))),
        }
    }

    /// The SQE for the operation's next step. Pointers go into heap memory owned by `self`
    /// (the pool buffer's block, the `CString`), which does not move when `self` does.
    fn sqe(&mut self, user_data: u64) -> io::Result<squeue::Entry> {
        match self {
            Op::Read {
                file,
                buf,
                offset,
                len,
                done,
                ..
            } => {
                let pos = offset
                    .checked_add(*done as u64)
                    .filter(|pos| *pos <= i64::MAX as u64)
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "offset does not fit an off_t")
                    })?;
                let rest = buf
                    .get_mut(*done..*len)
                    .ok_or_else(|| io::Error::other("read length exceeds the buffer"))?;
                let count = u32::try_from(rest.len())
                    .map_err(|_| io::Error::other("read length exceeds u32"))?;
                Ok(
                    opcode::Read::new(types::Fd(file.as_raw_fd()), rest.as_mut_ptr(), count)
                        .offset(pos)
                        .build()
                        .user_data(user_data),
                )
            }
            Op::Open { path, flags, .. } => Ok(opcode::OpenAt::new(
                types::Fd(libc::AT_FDCWD),
                path.as_ptr(),
            )
            .flags(*flags)
            .mode(0o644)
            .build()
            .user_data(user_data)),
            Op::Write {
                file,
                data,
                offset,
                done,
                ..
            } => {
                let pos = offset
                    .checked_add(*done as u64)
                    .filter(|pos| *pos <= i64::MAX as u64)
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "offset does not fit an off_t")
                    })?;
                let rest = data
                    .get(*done..)
                    .ok_or_else(|| io::Error::other("write progress exceeds the data"))?;
                let count = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                Ok(
                    opcode::Write::new(types::Fd(file.as_raw_fd()), rest.as_ptr(), count)
                        .offset(pos)
                        .build()
                        .user_data(user_data),
                )
            }
            Op::Fsync { file, .. } => Ok(opcode::Fsync::new(types::Fd(file.as_raw_fd()))
                .build()
                .user_data(user_data)),
        }
    }
}

/// The ring thread's state.
struct Worker {
    ring: IoUring,
    shared: Arc<Shared>,
    pool: BufferPool,
    /// Slab of operations in flight, indexed by `user_data`.
    ops: Vec<Option<Op>>,
    free_slots: Vec<usize>,
    in_flight: usize,
    /// Most operations in flight at once (fits the submission and completion queues).
    capacity: usize,
    /// Requests taken from the shared queue and not yet submitted.
    backlog: VecDeque<Request>,
    reaped: Vec<(u64, i32)>,
    /// Target of the pending eventfd read (boxed: its address must not move).
    efd_buf: Box<[u8; 8]>,
    efd_armed: bool,
}

impl Worker {
    fn run(mut self) {
        loop {
            let shutting_down = self.shared.shutdown.load(Ordering::SeqCst);
            {
                let mut queue = self.shared.queue();
                self.backlog.extend(queue.drain(..));
            }
            if !shutting_down && !self.efd_armed {
                self.arm_eventfd();
            }
            self.start_backlog();
            if shutting_down && !self.efd_armed && self.in_flight == 0 && self.backlog.is_empty() {
                break;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Out of kernel resources, or completions must be reaped first.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) => {
                        if self.ring.completion().is_empty() {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                    }
                    _ => {
                        self.die(e);
                        return;
                    }
                }
            }
            self.reap();
        }
        self.shared.close();
    }

    fn arm_eventfd(&mut self) {
        let entry = opcode::Read::new(
            types::Fd(self.shared.efd.as_raw_fd()),
            self.efd_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(EVENTFD_TOKEN);
        // SAFETY: the entry points into `efd_buf`, a heap block owned by this worker that is
        // neither moved nor freed before the read's completion is reaped (`run` only returns
        // with `efd_armed == false`; `die` leaks it), and the eventfd stays open in `shared`,
        // which this worker holds.
        match unsafe { self.ring.submission().push(&entry) } {
            Ok(()) => self.efd_armed = true,
            Err(_) => tracing::error!("io_uring submission queue full when arming the eventfd"),
        }
    }

    fn start_backlog(&mut self) {
        while self.in_flight < self.capacity {
            let Some(req) = self.backlog.pop_front() else {
                break;
            };
            if req.receiver_gone() {
                continue; // cancelled before it started: nothing to do
            }
            let op = match req {
                Request::Read {
                    file,
                    offset,
                    len,
                    tx,
                } => Op::Read {
                    file,
                    buf: self.pool.get(),
                    offset,
                    len,
                    done: 0,
                    retries: 0,
                    tx,
                },
                Request::Open { path, flags, tx } => Op::Open {
                    path,
                    flags,
                    retries: 0,
                    tx,
                },
                Request::Write {
                    file,
                    offset,
                    data,
                    tx,
                } => Op::Write {
                    file,
                    data,
                    offset,
                    done: 0,
                    retries: 0,
                    tx,
                },
                Request::Fsync { file, tx } => Op::Fsync {
                    file,
                    retries: 0,
                    tx,
                },
            };
            self.submit(op);
        }
    }

    /// Puts `op` into the slab and its SQE into the submission queue (submitted by the next
    /// `submit_and_wait`).
    fn submit(&mut self, mut op: Op) {
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.ops.push(None);
                self.ops.len() - 1
            }
        };
        let entry = match op.sqe(slot as u64) {
            Ok(entry) => entry,
            Err(e) => {
                self.free_slots.push(slot);
                op.fail(e);
                return;
            }
        };
        if self.ring.submission().is_full() {
            // Not expected (in-flight operations are capped below the queue size), but a
            // submit makes room.
            let _ = self.ring.submit();
        }
        // SAFETY: the entry points into memory owned by `op` (the pool buffer's heap block
        // or the written `Bytes`' heap data, the `Arc<File>` keeping the fd open, or the
        // `CString`). `op` is stored in
        // `ops[slot]` right below and stays there, unmoved on the heap side, until the
        // completion with `user_data == slot` is reaped in `complete` (or is leaked by `die`).
        match unsafe { self.ring.submission().push(&entry) } {
            Ok(()) => {
                if let Some(cell) = self.ops.get_mut(slot) {
                    *cell = Some(op);
                }
                self.in_flight += 1;
            }
            Err(_) => {
                self.free_slots.push(slot);
                op.fail(io::Error::other("io_uring submission queue is full"));
            }
        }
    }

    fn reap(&mut self) {
        self.reaped.clear();
        self.reaped.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        let reaped = std::mem::take(&mut self.reaped);
        for &(user_data, result) in &reaped {
            if user_data == EVENTFD_TOKEN {
                self.efd_armed = false;
                // Cleared before the next queue drain (see the module docs).
                self.shared.notified.store(false, Ordering::SeqCst);
                if result < 0 && result != -libc::EINTR && result != -libc::EAGAIN {
                    tracing::warn!(
                        error = %io::Error::from_raw_os_error(-result),
                        "io_uring eventfd read failed"
                    );
                }
            } else {
                self.complete(user_data, result);
            }
        }
        self.reaped = reaped;
    }

    fn complete(&mut self, user_data: u64, result: i32) {
        let slot = user_data as usize;
        let Some(op) = self.ops.get_mut(slot).and_then(Option::take) else {
            tracing::error!(user_data, "io_uring completion for an unknown operation");
            return;
        };
        self.in_flight -= 1;
        self.free_slots.push(slot);
        let retryable = result == -libc::EINTR || result == -libc::EAGAIN;
        match op {
            Op::Read {
                file,
                buf,
                offset,
                len,
                mut done,
                mut retries,
                tx,
            } => {
                if result < 0 && !(retryable && retries < MAX_RETRIES) {
                    drop(tx.send(Err(io::Error::from_raw_os_error(-result))));
                    return;
                }
                if result < 0 {
                    retries += 1;
                } else if result == 0 {
                    drop(tx.send(Ok(buf.freeze(done)))); // end of file
                    return;
                } else {
                    done += result as usize;
                    if done >= len {
                        drop(tx.send(Ok(buf.freeze(done))));
                        return;
                    }
                }
                // A short read before EOF, or EINTR/EAGAIN: go on with the rest.
                let op = Op::Read {
                    file,
                    buf,
                    offset,
                    len,
                    done,
                    retries,
                    tx,
                };
                if !op.receiver_gone() {
                    self.submit(op);
                }
            }
            Op::Write {
                file,
                data,
                offset,
                mut done,
                mut retries,
                tx,
            } => {
                if result < 0 && !(retryable && retries < MAX_RETRIES) {
                    drop(tx.send(Err(io::Error::from_raw_os_error(-result))));
                    return;
                }
                if result < 0 {
                    retries += 1;
                } else if result == 0 {
                    drop(tx.send(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write returned 0 bytes",
                    ))));
                    return;
                } else {
                    done += result as usize;
                    if done >= data.len() {
                        drop(tx.send(Ok(())));
                        return;
                    }
                }
                self.submit(Op::Write {
                    file,
                    data,
                    offset,
                    done,
                    retries,
                    tx,
                });
            }
            Op::Fsync {
                file,
                mut retries,
                tx,
            } => {
                if result >= 0 {
                    drop(tx.send(Ok(())));
                } else if retryable && retries < MAX_RETRIES {
                    retries += 1;
                    self.submit(Op::Fsync { file, retries, tx });
                } else {
                    drop(tx.send(Err(io::Error::from_raw_os_error(-result))));
                }
            }
            Op::Open {
                path,
                flags,
                mut retries,
                tx,
            } => {
                if result >= 0 {
                    // SAFETY: a successful OPENAT returns a new descriptor that nothing else
                    // owns; the File takes ownership (and closes it if the receiver is gone).
                    let file = unsafe { File::from_raw_fd(result) };
                    drop(tx.send(Ok(Arc::new(file))));
                } else if retryable && retries < MAX_RETRIES {
                    retries += 1;
                    let op = Op::Open {
                        path,
                        flags,
                        retries,
                        tx,
                    };
                    if !op.receiver_gone() {
                        self.submit(op);
                    }
                } else {
                    drop(tx.send(Err(io::Error::from_raw_os_error(-result))));
                }
            }
        }
    }

    /// `io_uring_enter` failed for good: fail everything and leak what the kernel may still
    /// write into, rather than free it.
    fn die(mut self, err: io::Error) {
        tracing::error!(error = %err, "io_uring_enter failed; the io_uring engine stops");
        self.shared.close();
        for req in self.backlog.drain(..) {
            req.fail(stopped());
        }
        for op in self.ops.drain(..).flatten() {
            match op {
                Op::Read { file, buf, tx, .. } => {
                    drop(tx.send(Err(stopped())));
                    std::mem::forget(buf);
                    std::mem::forget(file);
                }
                Op::Open { path, tx, .. } => {
                    drop(tx.send(Err(stopped())));
                    std::mem::forget(path);
                }
                Op::Write { file, data, tx, .. } => {
                    drop(tx.send(Err(stopped())));
                    std::mem::forget(data);
                    std::mem::forget(file);
                }
                Op::Fsync { file, tx, .. } => {
                    drop(tx.send(Err(stopped())));
                    std::mem::forget(file);
                }
            }
        }
        let Worker {
            ring,
            shared,
            efd_buf,
            ..
        } = self;
        std::mem::forget(efd_buf);
        std::mem::forget(shared);
        std::mem::forget(ring);
    }
}
