//! The numbered event stream of one process: every output chunk, the exit
//! and the close get the next `seq` from one [`Events::push`], so the
//! sequence is gapless and `closed` is always last. It also keeps the newest
//! output for `process/read` (bounded by bytes and by chunks) and answers
//! those reads ([`Events::snapshot`]).

use crate::protocol::{OutputChunkWire, ProcessReadResponse, StreamName};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Instant;

/// Chunks retained per process at most (PROTOCOL.md §12).
const MAX_RETAINED_CHUNKS: usize = 50_000;

/// One event of a process, as it is numbered.
pub enum Event {
    Output(StreamName, Bytes),
    Exited(i32),
    Closed,
}

/// The numbered events of a process, and what `process/read` replays.
#[derive(Debug)]
pub struct Events {
    /// The newest output chunks: (seq, stream, bytes).
    retained: VecDeque<(u64, StreamName, Bytes)>,
    retained_bytes: usize,
    /// Output kept at most, in bytes (the newest chunk is always kept).
    retain_limit: usize,
    /// The next `seq` to assign (starts at 1).
    next_seq: u64,
    /// Exit status and the `seq` of the exited event.
    exit: Option<(i32, u64)>,
    /// `seq` of the closed event.
    closed: Option<u64>,
    /// When the process closed, for expiring the entry.
    closed_at: Option<Instant>,
}

impl Events {
    pub fn new(retain_limit: usize) -> Self {
        Self {
            retained: VecDeque::new(),
            retained_bytes: 0,
            retain_limit,
            next_seq: 1,
            exit: None,
            closed: None,
            closed_at: None,
        }
    }

    /// Records `event` under the next `seq` and returns that `seq`.
    pub fn push(&mut self, event: Event) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        match event {
            Event::Output(stream, data) => {
                self.retained_bytes += data.len();
                self.retained.push_back((seq, stream, data));
                while self.retained.len() > 1
                    && (self.retained_bytes > self.retain_limit
                        || self.retained.len() > MAX_RETAINED_CHUNKS)
                {
                    if let Some((_, _, old)) = self.retained.pop_front() {
                        self.retained_bytes -= old.len();
                    }
                }
            }
            Event::Exited(status) => self.exit = Some((status, seq)),
            Event::Closed => {
                self.closed = Some(seq);
                self.closed_at = Some(Instant::now());
            }
        }
        seq
    }

    /// The command has not exited yet.
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }

    /// When the process sent its last event, if it has.
    pub fn closed_at(&self) -> Option<Instant> {
        self.closed_at
    }

    /// Bytes of output kept for `process/read`.
    pub fn retained_bytes(&self) -> usize {
        self.retained_bytes
    }

    /// Forgets the kept output; reads then return the status only.
    pub fn drop_retained(&mut self) {
        self.retained.clear();
        self.retained_bytes = 0;
    }

    /// Whether a read after `after` has something to return now.
    pub fn has_news(&self, after: u64) -> bool {
        self.retained.back().is_some_and(|(s, _, _)| *s > after)
            || self.exit.is_some_and(|(_, s)| s > after)
            || self.closed.is_some()
    }

    /// `process/read`: the events after `after`, at most about `max_bytes`
    /// of output (but always one chunk when there is one).
    pub fn snapshot(&self, after: u64, max_bytes: Option<usize>) -> ProcessReadResponse {
        let mut chunks = Vec::new();
        let mut used = 0usize;
        let mut truncated_at = None;
        for (seq, stream, data) in self.retained.iter().filter(|(s, _, _)| *s > after) {
            if let Some(max) = max_bytes {
                if !chunks.is_empty() && used + data.len() > max {
                    truncated_at = Some(*seq);
                    break;
                }
            }
            used += data.len();
            chunks.push(OutputChunkWire {
                seq: *seq,
                stream: *stream,
                chunk: crate::b64::encode(data),
            });
        }
        let next_seq = match truncated_at {
            Some(_) => chunks.last().map(|c| c.seq + 1).unwrap_or(after + 1),
            None => self.next_seq,
        };
        ProcessReadResponse {
            chunks,
            next_seq,
            exited: self.exit.is_some(),
            exit_code: self.exit.map(|(c, _)| c),
            closed: self.closed.is_some(),
            failure: None,
            sandbox_denied: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_respects_max_bytes_but_returns_one_chunk() {
        let mut ev = Events::new(usize::MAX);
        ev.push(Event::Output(StreamName::Stdout, Bytes::from_static(b"aaaa")));
        ev.push(Event::Output(StreamName::Stdout, Bytes::from_static(b"bbbb")));
        ev.push(Event::Output(StreamName::Stderr, Bytes::from_static(b"cc")));
        let all = ev.snapshot(0, None);
        assert_eq!(all.chunks.len(), 3);
        assert_eq!(all.next_seq, 4);
        let one = ev.snapshot(0, Some(1));
        assert_eq!(one.chunks.len(), 1);
        assert_eq!(one.next_seq, 2);
        let tail = ev.snapshot(2, None);
        assert_eq!(tail.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn push_numbers_every_event_once_and_closed_last() {
        let mut ev = Events::new(usize::MAX);
        assert_eq!(ev.push(Event::Output(StreamName::Stdout, Bytes::from_static(b"x"))), 1);
        assert_eq!(ev.push(Event::Exited(3)), 2);
        assert_eq!(ev.push(Event::Closed), 3);
        let r = ev.snapshot(0, None);
        assert_eq!((r.exit_code, r.closed, r.next_seq), (Some(3), true, 4));
    }
}
