//! The connection layer's look at HTTP/1 request heads before hyper parses them, for what hyper
//! accepts or answers with an empty body: a head line ended by a bare LF (RFC 9112 2.2 lets a
//! server reject it; a proxy in front that reads it differently is how requests get smuggled), an
//! HTTP/1.1 request without exactly one Host (RFC 9112 3.2: 400), a request target with bytes
//! outside visible ASCII (RFC 9112 3.2, RFC 3986 2: hyper's empty 400), a head larger than
//! `max_head` (hyper's empty 431). Each is refused with the JSON error of `http::error`.
//!
//! `Checked` wraps a connection's stream: the bytes of a request head reach hyper only once the
//! whole head has been read and passed; bodies (`Content-Length`) pass as they come. A refused
//! head ends the stream for hyper (EOF: it finishes what it was answering), and the error response
//! is written when hyper shuts the connection down. After a chunked body, and on HTTP/2, bytes pass
//! unlooked-at (hyper's own parser then decides).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ApiError;

/// The HTTP/2 connection preface (RFC 9113 3.4): such a connection is passed through.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a head (held back until whole).
    Head,
    /// This many body bytes pass before the next head.
    Body(u64),
    /// Everything passes (HTTP/2, or after a body this layer does not frame).
    Pass,
}

/// What one connection's bytes have been so far.
pub struct HeadCheck {
    phase: Phase,
    head: Vec<u8>,
    first: bool,
    max_head: usize,
}

impl HeadCheck {
    pub fn new(max_head: usize) -> HeadCheck {
        HeadCheck {
            phase: Phase::Head,
            head: Vec::new(),
            first: true,
            max_head,
        }
    }

    /// An HTTP/2 connection (TLS ALPN h2): nothing to look at.
    pub fn pass() -> HeadCheck {
        HeadCheck {
            phase: Phase::Pass,
            ..HeadCheck::new(0)
        }
    }

    /// Takes bytes read from the client; those that may go on to hyper are appended to `out`.
    /// An error refuses the head being read (`out` holds what came before it).
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        while !data.is_empty() {
            match self.phase {
                Phase::Pass => {
                    out.extend_from_slice(data);
                    return Ok(());
                }
                Phase::Body(n) => {
                    let k = (n.min(data.len() as u64)) as usize;
                    out.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    self.phase = if n == k as u64 {
                        Phase::Head
                    } else {
                        Phase::Body(n - k as u64)
                    };
                }
                Phase::Head => {
                    // Empty lines before a request line are ignored (RFC 9112 2.2).
                    if self.head.is_empty() {
                        let skip = data.chunks(2).take_while(|c| *c == b"\r\n").count() * 2;
                        out.extend_from_slice(&data[..skip]);
                        data = &data[skip..];
                        if data.is_empty() {
                            return Ok(());
                        }
                    }
                    let from = self.head.len().saturating_sub(3);
                    self.head.extend_from_slice(data);
                    if self.first {
                        let n = self.head.len().min(PREFACE.len());
                        if self.head[..n] == PREFACE[..n] {
                            if n == PREFACE.len() {
                                self.phase = Phase::Pass;
                                out.append(&mut self.head);
                            }
                            return Ok(());
                        }
                    }
                    let Some(end) = head_end(&self.head, from)? else {
                        if self.head.len() > self.max_head {
                            return Err(ApiError::header_too_large(self.max_head));
                        }
                        return Ok(());
                    };
                    if end > self.max_head {
                        return Err(ApiError::header_too_large(self.max_head));
                    }
                    self.first = false;
                    self.phase = vet(&self.head[..end])?;
                    let rest = self.head.split_off(end);
                    out.append(&mut self.head);
                    // What followed the head is looked at in its own phase.
                    return self.feed(&rest, out);
                }
            }
        }
        Ok(())
    }
}

/// The length of the head (through its empty line) once it is whole; an error at a bare LF.
/// `from`: where to resume the scan (lines before it were looked at).
fn head_end(head: &[u8], from: usize) -> Result<Option<usize>, ApiError> {
    for i in from..head.len() {
        if head[i] != b'\n' {
            continue;
        }
        if i == 0 || head[i - 1] != b'\r' {
            return Err(ApiError::bad_request(
                "a line of the request head ends with a bare LF, not CRLF (RFC 9112 2.2)",
            ));
        }
        if i >= 3 && &head[i - 3..=i] == b"\r\n\r\n" {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

/// Checks a whole head; returns what follows it.
fn vet(head: &[u8]) -> Result<Phase, ApiError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = &head[..line_end];
    let mut parts = line.split(|b| *b == b' ');
    let (Some(_method), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ApiError::bad_request(
            "the request line is not: method SP request-target SP HTTP-version (RFC 9112 3)",
        ));
    };
    if let Some(b) = target.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Err(ApiError::bad_request(format!(
            "byte 0x{b:02x} in the request target: only visible ASCII is allowed there, \
             percent-encode the rest (RFC 9112 3.2, RFC 3986 2.1)"
        )));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ApiError::bad_request("the request head is incomplete"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ApiError::header_too_large(head.len()));
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "malformed request head: {e}"
            )));
        }
    }
    let named = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    if req.version == Some(1) && named("host").count() != 1 {
        return Err(ApiError::bad_request(
            "an HTTP/1.1 request needs exactly one Host header field (RFC 9112 3.2)",
        ));
    }
    if named("transfer-encoding").next().is_some() {
        // Chunked (or another coding): hyper frames it; this connection is not looked at again.
        return Ok(Phase::Pass);
    }
    let mut lengths = named("content-length");
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(h), None) => match std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            Some(n) => n,
            // hyper refuses it; nothing after it is a head of ours to look at.
            None => return Ok(Phase::Pass),
        },
        (Some(_), Some(_)) => return Ok(Phase::Pass),
    };
    Ok(if length == 0 {
        Phase::Head
    } else {
        Phase::Body(length)
    })
}

/// A write that does not wait: what can go out at once (a plain socket's `try_write`), or
/// `WouldBlock`.
pub trait WriteNow {
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize>;
}

/// A stream whose request heads pass `HeadCheck` before hyper reads them.
pub struct Checked<S: WriteNow> {
    inner: S,
    check: HeadCheck,
    /// Bytes passed, not yet handed to hyper.
    ready: Vec<u8>,
    at: usize,
    /// The refusal to write when hyper shuts down, and how much of it is written.
    refusal: Option<(Vec<u8>, usize)>,
    eof: bool,
}

impl<S: WriteNow> Checked<S> {
    pub fn new(inner: S, check: HeadCheck) -> Checked<S> {
        Checked {
            inner,
            check,
            ready: Vec::new(),
            at: 0,
            refusal: None,
            eof: false,
        }
    }

    /// Whether a head was refused (the connection is finishing).
    pub fn refused(&self) -> bool {
        self.refusal.is_some()
    }
}

impl<S: AsyncRead + WriteNow + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if me.at < me.ready.len() {
                let n = (me.ready.len() - me.at).min(buf.remaining());
                buf.put_slice(&me.ready[me.at..me.at + n]);
                me.at += n;
                if me.at == me.ready.len() {
                    me.ready.clear();
                    me.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.eof {
                return Poll::Ready(Ok(()));
            }
            let mut scratch = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                me.eof = true;
                continue;
            }
            if let Err(e) = me.check.feed(rb.filled(), &mut me.ready) {
                me.refusal = Some((e.to_http1(), 0));
                me.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + WriteNow + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        // The refusal goes after whatever hyper answered before it.
        if let Some((bytes, written)) = &mut me.refusal {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut me.inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    break;
                }
                *written += n;
            }
            ready!(Pin::new(&mut me.inner).poll_flush(cx))?;
        }
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

/// hyper does not always shut the stream down before dropping it (an error ends its loop without
/// one): then the refusal goes out here, as far as the socket takes it at once (it is short and
/// the socket's buffer is free; on TLS this does nothing).
impl<S: WriteNow> Drop for Checked<S> {
    fn drop(&mut self) {
        if let Some((bytes, written)) = &mut self.refusal {
            while *written < bytes.len() {
                match self.inner.write_now(&bytes[*written..]) {
                    Ok(n) if n > 0 => *written += n,
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[&[u8]]) -> (Vec<u8>, Option<&'static str>) {
        let mut c = HeadCheck::new(1024);
        let mut out = Vec::new();
        for piece in input {
            if let Err(e) = c.feed(piece, &mut out) {
                return (out, Some(e.code));
            }
        }
        (out, None)
    }

    #[test]
    fn whole_heads_pass_split_ones_wait() {
        let req: &[u8] = b"GET /d?host=a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(&[req]), (req.to_vec(), None));
        let (out, err) = run(&[&req[..10]]);
        assert!(out.is_empty() && err.is_none());
        assert_eq!(run(&[&req[..10], &req[10..]]), (req.to_vec(), None));
        // Two pipelined requests, the second split, and a body counted by its length.
        let post: &[u8] = b"POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n\n\n\n";
        let both = [post, req].concat();
        assert_eq!(run(&[&both[..70], &both[70..]]), (both.clone(), None));
    }

    #[test]
    fn refusals() {
        let bad = |input: &[u8]| run(&[input]).1;
        assert_eq!(bad(b"GET / HTTP/1.1\nHost: x\n\n"), Some("BadRequest"));
        assert_eq!(bad(b"GET / HTTP/1.1\r\nHost: x\n\r\n"), Some("BadRequest"));
        assert_eq!(bad(b"GET / HTTP/1.1\r\n\r\n"), Some("BadRequest"));
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Some("BadRequest")
        );
        assert_eq!(
            bad(b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("BadRequest")
        );
        assert_eq!(bad(&[b'a'; 2000]), Some("HeaderTooLarge"));
        // HTTP/1.0 needs no Host; the HTTP/2 preface passes.
        assert_eq!(bad(b"GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(run(&[PREFACE, b"\n\n\n"]).0, [PREFACE, b"\n\n\n"].concat());
    }
}
