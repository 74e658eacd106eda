//! Response bodies for the hyper front end (h1 and h2 over TLS).
//!
//! File ranges are read through the [`IoEngine`] (the io_uring ring thread or the pread pool),
//! never on a runtime worker, one pooled buffer at a time, with the next read already in flight
//! while the current chunk is encrypted and written: the disk and the TLS pass overlap.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use oca_storage::{IoEngine, IoFuture};

use crate::handler::{PlanBody, Shared};
use crate::metrics::{Proto, TierLabel};

/// The body of every response the appliance sends over hyper.
#[derive(Debug)]
pub enum OcaBody {
    Empty,
    Bytes(Option<Bytes>, Counted),
    File(Box<FileBody>),
}

/// Where to count body bytes once they leave.
#[derive(Debug, Clone)]
pub struct Counted {
    pub shared: Arc<Shared>,
    pub proto: Proto,
    pub tier: TierLabel,
}

impl OcaBody {
    pub fn from_plan(body: PlanBody, counted: Counted) -> OcaBody {
        match body {
            PlanBody::Empty => OcaBody::Empty,
            PlanBody::Bytes(b) => OcaBody::Bytes(Some(b), counted),
            PlanBody::File { path, offset, len } => {
                let state = match counted.shared.files.get(&path) {
                    Some(file) => FileState::Reading {
                        file,
                        inflight: None,
                        done: None,
                    },
                    None => {
                        let shared = counted.shared.clone();
                        let path = path.clone();
                        FileState::Opening(Box::pin(async move { shared.open_file(path).await }))
                    }
                };
                OcaBody::File(Box::new(FileBody {
                    path,
                    engine: counted.shared.engine.clone(),
                    state,
                    pos: offset,
                    end: offset + len,
                    counted,
                }))
            }
        }
    }
}

impl Body for OcaBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            OcaBody::Empty => Poll::Ready(None),
            OcaBody::Bytes(b, counted) => Poll::Ready(b.take().map(|b| {
                counted
                    .shared
                    .count_bytes(counted.proto, counted.tier, b.len() as u64);
                Ok(Frame::data(b))
            })),
            OcaBody::File(f) => f.poll_chunk(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OcaBody::Empty => true,
            OcaBody::Bytes(b, _) => b.is_none(),
            OcaBody::File(f) => f.pos >= f.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OcaBody::Empty => SizeHint::with_exact(0),
            OcaBody::Bytes(b, _) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OcaBody::File(f) => SizeHint::with_exact(f.end - f.pos),
        }
    }
}

enum FileState {
    Opening(IoFuture<Arc<File>>),
    Reading {
        file: Arc<File>,
        inflight: Option<IoFuture<Bytes>>,
        /// A read that completed while it was being started (the prefetch poll).
        done: Option<io::Result<Bytes>>,
    },
    Failed,
}

/// A byte range of a file, streamed in pooled-buffer chunks with one read ahead.
pub struct FileBody {
    /// The object file (read errors are reported against its drive).
    path: std::path::PathBuf,
    engine: Arc<dyn IoEngine>,
    state: FileState,
    /// Next byte to hand out.
    pos: u64,
    end: u64,
    counted: Counted,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

impl FileBody {
    fn next_read(&self, file: &Arc<File>, from: u64) -> IoFuture<Bytes> {
        let len = (self.end - from).min(self.engine.buffer_size() as u64) as usize;
        self.engine.read_at(file.clone(), from, len)
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if self.pos >= self.end {
                return Poll::Ready(None);
            }
            match &mut self.state {
                FileState::Failed => return Poll::Ready(None),
                FileState::Opening(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Ok(file) => {
                        self.state = FileState::Reading {
                            file,
                            inflight: None,
                            done: None,
                        };
                    }
                    Err(e) => return Poll::Ready(Some(Err(self.fail(e)))),
                },
                FileState::Reading { .. } => return self.poll_read(cx),
            }
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let FileState::Reading {
            file,
            inflight,
            done,
        } = &mut self.state
        else {
            return Poll::Ready(None);
        };
        let result = match done.take() {
            Some(r) => r,
            None => {
                if inflight.is_none() {
                    let len = (self.end - self.pos).min(self.engine.buffer_size() as u64) as usize;
                    *inflight = Some(self.engine.read_at(file.clone(), self.pos, len));
                }
                let fut = inflight.as_mut().map(|f| f.as_mut().poll(cx));
                match fut {
                    Some(Poll::Ready(r)) => {
                        *inflight = None;
                        r
                    }
                    _ => return Poll::Pending,
                }
            }
        };
        let mut chunk = match result {
            Ok(c) => c,
            Err(e) => return Poll::Ready(Some(Err(self.fail(e)))),
        };
        if chunk.is_empty() {
            // The file is shorter than the index says: it changed under us.
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object file shorter than its index entry",
            );
            return Poll::Ready(Some(Err(self.fail(e))));
        }
        let room = (self.end - self.pos) as usize;
        if chunk.len() > room {
            chunk.truncate(room);
        }
        self.pos += chunk.len() as u64;
        // Start the next read now so it runs while this chunk is encrypted and sent.
        if self.pos < self.end {
            let file = file.clone();
            let mut next = self.next_read(&file, self.pos);
            if let FileState::Reading { inflight, done, .. } = &mut self.state {
                match next.as_mut().poll(cx) {
                    Poll::Ready(r) => *done = Some(r),
                    Poll::Pending => *inflight = Some(next),
                }
            }
        }
        self.counted
            .shared
            .count_bytes(self.counted.proto, self.counted.tier, chunk.len() as u64);
        Poll::Ready(Some(Ok(chunk)))
    }

    #[cold]
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.state = FileState::Failed;
        self.counted.shared.metrics.read_errors.inc();
        self.counted.shared.read_failed(&self.path, &e);
        tracing::warn!(error = %e, "object read failed; closing the response");
        e
    }
}
