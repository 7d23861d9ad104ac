//! The UDP receive/send loop both the authoritative and the resolver listeners run: one thread per
//! socket, blocking I/O, and on Linux `recvmmsg`/`sendmmsg` so one system call carries a batch of
//! queries in and a batch of answers out (design.md 5: the per-packet syscall is the floor the
//! peers sit on; batching lowers it). A thread per socket, with `SO_REUSEPORT` giving each worker
//! its own socket on the same address, keeps tokio's readiness machinery and task wake-ups off the
//! per-packet path.
//!
//! The loop ends soon after `stop` is set: receives time out every `POLL` to look at it.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a blocked receive wakes to look at the stop flag.
pub const POLL: Duration = Duration::from_millis(200);
/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 32;
/// Largest query accepted; longer datagrams (never a sane query) are dropped.
pub const MAX_QUERY: usize = 4096;

/// Sets `stop` when dropped: the future owning it (the server's task) going away ends the thread.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a serving thread does with the datagrams it receives. It runs on the receive thread, so
/// nothing here may block for long.
pub trait Answerer {
    /// A batch has arrived; called before its first datagram.
    fn begin(&mut self) {}
    /// Writes the reply to `packet` from `peer` into `out` (empty on entry, and a buffer the loop
    /// reuses, so a reply costs no allocation); false sends nothing.
    fn answer(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> bool;
    /// The batch is answered (`answered` replies); called before they are sent.
    fn end(&mut self, _answered: usize) {}
    /// Nothing arrived for `POLL`.
    fn idle(&mut self) {}
}

/// An [`Answerer`] from a function returning the reply as a new buffer.
pub struct Replies<F>(pub F);

impl<F: FnMut(&[u8], SocketAddr) -> Option<Vec<u8>>> Answerer for Replies<F> {
    fn answer(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        match (self.0)(packet, peer) {
            Some(reply) => {
                *out = reply;
                true
            }
            None => false,
        }
    }
}

/// Serves `socket` until `stop` is set or a fatal error, replying to each datagram as `answer`
/// says.
pub fn serve(socket: &UdpSocket, stop: &AtomicBool, mut answer: impl Answerer) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(POLL))?;
    #[cfg(target_os = "linux")]
    {
        batched::serve(socket, stop, &mut answer)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut buf = vec![0u8; 65535];
        let mut out = Vec::with_capacity(512);
        while !stop.load(Ordering::Relaxed) {
            let (n, peer) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if transient(&e) => {
                    answer.idle();
                    continue;
                }
                Err(e) => return Err(e),
            };
            answer.begin();
            out.clear();
            let reply = answer.answer(&buf[..n], peer, &mut out);
            answer.end(usize::from(reply));
            if reply {
                let _ = socket.send_to(&out, peer);
            }
        }
        Ok(())
    }
}

/// Errors after which the loop just goes on: timeouts (the stop poll), interrupted calls, and ICMP
/// errors from earlier sends surfacing on the socket.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(target_os = "linux")]
mod batched {
    use super::*;
    use std::mem::{MaybeUninit, size_of, zeroed};
    use std::os::fd::AsRawFd;

    struct Slots {
        bufs: Vec<[u8; MAX_QUERY]>,
        addrs: Vec<libc::sockaddr_storage>,
        iovs: Vec<libc::iovec>,
        msgs: Vec<libc::mmsghdr>,
    }

    impl Slots {
        fn new() -> Box<Slots> {
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
            // bytes are a valid (empty) value.
            let mut s = Box::new(Slots {
                bufs: vec![[0u8; MAX_QUERY]; BATCH],
                addrs: vec![unsafe { zeroed() }; BATCH],
                iovs: vec![unsafe { zeroed() }; BATCH],
                msgs: vec![unsafe { zeroed() }; BATCH],
            });
            s.rearm();
            s
        }

        /// Points every message header at its buffer and address slot, lengths reset.
        fn rearm(&mut self) {
            for i in 0..BATCH {
                self.iovs[i] = libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: MAX_QUERY,
                };
                let h = &mut self.msgs[i].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                self.msgs[i].msg_len = 0;
            }
        }
    }

    fn peer_of(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
        let len = len as usize;
        match addr.ss_family as libc::c_int {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
                let a = unsafe { &*(addr as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe { &*(addr as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    pub(super) fn serve(
        socket: &UdpSocket,
        stop: &AtomicBool,
        answer: &mut impl Answerer,
    ) -> io::Result<()> {
        let fd = socket.as_raw_fd();
        let mut slots = Slots::new();
        // Reply buffers live as long as the thread: a reply is written into one, not allocated.
        let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
        let mut replies: Vec<(usize, libc::sockaddr_storage, libc::socklen_t)> =
            Vec::with_capacity(BATCH);
        let mut out_iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        let mut out_msgs: Vec<libc::mmsghdr> = Vec::with_capacity(BATCH);
        while !stop.load(Ordering::Relaxed) {
            slots.rearm();
            // Blocks for the first datagram (up to the receive timeout), then takes what else is
            // already queued, up to BATCH.
            // SAFETY: `msgs` holds BATCH headers pointing into buffers that live as long as `slots`.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    slots.msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if transient(&e) {
                    answer.idle();
                    continue;
                }
                return Err(e);
            }
            replies.clear();
            answer.begin();
            for i in 0..n as usize {
                let h = &slots.msgs[i].msg_hdr;
                if h.msg_flags & libc::MSG_TRUNC != 0 {
                    continue;
                }
                let Some(peer) = peer_of(&slots.addrs[i], h.msg_namelen) else {
                    continue;
                };
                let len = slots.msgs[i].msg_len as usize;
                let out = &mut outs[replies.len()];
                out.clear();
                if answer.answer(&slots.bufs[i][..len], peer, out) {
                    replies.push((replies.len(), slots.addrs[i], h.msg_namelen));
                }
            }
            answer.end(replies.len());
            send_all(fd, &mut outs, &mut replies, &mut out_iovs, &mut out_msgs);
        }
        Ok(())
    }

    /// Sends every reply with as few `sendmmsg` calls as the kernel allows; a reply the kernel
    /// refuses (e.g. the peer's ICMP error on a previous one) is skipped, as a lost datagram.
    fn send_all(
        fd: i32,
        outs: &mut [Vec<u8>],
        replies: &mut [(usize, libc::sockaddr_storage, libc::socklen_t)],
        iovs: &mut Vec<libc::iovec>,
        msgs: &mut Vec<libc::mmsghdr>,
    ) {
        if replies.is_empty() {
            return;
        }
        iovs.clear();
        msgs.clear();
        for (at, _, _) in replies.iter() {
            let buf = &mut outs[*at];
            iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for (i, (_, addr, len)) in replies.iter_mut().enumerate() {
            // SAFETY: all-zero is a valid mmsghdr; the pointers set below outlive the call.
            let mut m: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            m.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = *len;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            msgs.push(m);
        }
        let mut sent = 0usize;
        while sent < msgs.len() {
            // SAFETY: msgs[sent..] are valid headers pointing at live buffers and addresses.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[sent..].as_mut_ptr(),
                    (msgs.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first message of the rest failed: drop it, carry on with the others.
            sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_batches_and_stops() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            serve(
                &server,
                &s2,
                Replies(|p: &[u8], _| {
                    if p == b"quiet" {
                        None
                    } else {
                        Some(p.iter().rev().copied().collect())
                    }
                }),
            )
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // A burst larger than one batch, with a packet that gets no answer in the middle.
        for i in 0..(BATCH as u32 * 2 + 5) {
            let msg = if i == 7 {
                b"quiet".to_vec()
            } else {
                format!("q{i}").into_bytes()
            };
            client.send_to(&msg, addr).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..(BATCH * 2 + 4) {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            got.push(String::from_utf8(buf[..n].iter().rev().copied().collect()).unwrap());
        }
        got.sort();
        let mut want: Vec<String> = (0..(BATCH as u32 * 2 + 5))
            .filter(|&i| i != 7)
            .map(|i| format!("q{i}"))
            .collect();
        want.sort();
        assert_eq!(got, want);
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap().unwrap();
    }
}
