//! The floor: a UDP "server" that turns each query into a response header and sends it back,
//! through the same batched loop as gslbd (`gslbd::udp::serve`), doing no DNS work. dnsperf against
//! it measures what the syscalls and the kernel cost per packet on this machine.
//!
//!     cargo run --release --example reflector -- 127.0.0.1:5399

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;

/// Echoes the query with QR set, into the loop's reused buffer (as gslbd's own answers are).
struct Reflect;

impl gslbd::udp::Answerer for Reflect {
    fn answer(&mut self, packet: &[u8], _: SocketAddr, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(packet);
        if out.len() >= 12 {
            out[2] |= 0x80; // QR
        }
        true
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5399".into());
    let socket = UdpSocket::bind(&addr)?;
    eprintln!("reflecting on {}", socket.local_addr()?);
    let stop = AtomicBool::new(false);
    gslbd::udp::serve(&socket, &stop, Reflect)
}
