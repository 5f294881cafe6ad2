//! The control channel between the front process and one tenant's worker:
//! a Unix `SOCK_SEQPACKET` socket pair. Each message is one packet of JSON,
//! so a connection's descriptor (passed with `SCM_RIGHTS`) always arrives
//! with the message it belongs to, and a message is never split or merged.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The largest message either side sends (a worker's metrics text is the
/// largest, a few KiB per tenant). The kernel's socket buffer bounds a
/// packet at about 200 KiB anyway.
pub const MAX_MESSAGE: usize = 160 * 1024;

/// From the front to a worker.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum ToWorker {
    /// The first message: everything the worker needs to start.
    Start(Box<super::WorkerSpec>),
    /// An accepted TCP connection (its descriptor rides along), whose HTTP
    /// request the front has peeked at but not read: the worker serves it
    /// from its first byte. `seq` counts connections handed to this worker.
    Connection { seq: u64 },
    /// Asks for the worker's metrics (answered with [`FromWorker::Metrics`]).
    Metrics,
    /// An admin API question (answered with [`FromWorker::Admin`] and the
    /// same `id`).
    Admin { id: u64, request: super::admin::AdminRequest },
    /// Drain and exit (shutdown, the tenant removed or drained, or the front
    /// retires an idle worker); `reason` goes to each client's close frame.
    Shutdown { reason: String },
}

/// From a worker to the front.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum FromWorker {
    /// Started and confined; `confinement` says how, for the log.
    Ready { confinement: String },
    /// The worker's metrics, OpenMetrics text.
    Metrics(String),
    /// No connection and no session for a while; `received` connections so
    /// far. The front retires the worker if it has sent no more than that.
    Idle { received: u64 },
    /// Handed connection number `seq` has ended: the front lets go of its
    /// copy of the descriptor.
    Closed { seq: u64 },
    /// The answer to [`ToWorker::Admin`] `id`, as JSON text.
    Admin { id: u64, reply: String },
}

/// A connected socket pair for a new worker: `(front's end, worker's end)`.
/// Both ends are close-on-exec; the worker's end becomes its stdin.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    Ok(socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

fn encode(msg: &impl Serialize) -> io::Result<Vec<u8>> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::other(format!(
            "control message of {} bytes is over the {MAX_MESSAGE}-byte limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Sends one packet, with `fd` if given. Blocking or not as the socket is.
fn send_raw(sock: BorrowedFd<'_>, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    let sent = sendmsg(sock, &[io::IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL)?;
    if sent != bytes.len() {
        return Err(io::Error::other("control message was cut short"));
    }
    Ok(())
}

/// Receives one packet and the descriptor that came with it. `Ok(None)`: the
/// other side closed.
fn recv_raw(sock: BorrowedFd<'_>) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut buf = vec![0u8; MAX_MESSAGE];
    // Room for a few descriptors: a peer that sends more than one gets the
    // extras closed, never leaked.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg =
        recvmsg(sock, &mut [io::IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fd = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for f in fds {
                fd.get_or_insert(f);
            }
        }
    }
    if msg.bytes == 0 && fd.is_none() {
        return Ok(None);
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::other("control message over the size limit"));
    }
    buf.truncate(msg.bytes);
    Ok(Some((buf, fd)))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("control message: {e}")))
}

/// Reads the first message while the worker has no async runtime yet.
pub fn recv_blocking<T: DeserializeOwned>(sock: BorrowedFd<'_>) -> io::Result<Option<T>> {
    match recv_raw(sock)? {
        Some((bytes, _)) => decode(&bytes).map(Some),
        None => Ok(None),
    }
}

/// One end of the channel, on the async runtime.
pub struct Channel {
    fd: AsyncFd<OwnedFd>,
}

impl Channel {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: the AsyncFd owns the descriptor (an `OwnedFd`), so it stays
        // open while registered and is closed only after deregistration.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Sends `msg`, with `fd` if given.
    pub async fn send(&self, msg: &impl Serialize, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bytes = encode(msg)?;
        self.fd.async_io(Interest::WRITABLE, |sock| send_raw(sock.as_fd(), &bytes, fd)).await
    }

    /// The next message and its descriptor; `Ok(None)` once the other side
    /// has closed.
    pub async fn recv<T: DeserializeOwned>(&self) -> io::Result<Option<(T, Option<OwnedFd>)>> {
        let got = self.fd.async_io(Interest::READABLE, |sock| recv_raw(sock.as_fd())).await?;
        match got {
            Some((bytes, fd)) => Ok(Some((decode(&bytes)?, fd))),
            None => Ok(None),
        }
    }
}
