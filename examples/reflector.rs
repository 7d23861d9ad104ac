//! The floor: a UDP "server" that turns each query into a response header and sends it back,
//! through the same batched loop as gslbd (`gslbd::udp::serve`), doing no DNS work. dnsperf against
//! it measures what the syscalls and the kernel cost per packet on this machine.
//!
//!     cargo run --release --example reflector -- 127.0.0.1:5399

use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5399".into());
    let socket = UdpSocket::bind(&addr)?;
    eprintln!("reflecting on {}", socket.local_addr()?);
    let stop = AtomicBool::new(false);
    gslbd::udp::serve(&socket, &stop, |packet, _| {
        let mut r = packet.to_vec();
        if r.len() >= 12 {
            r[2] |= 0x80; // QR
        }
        Some(r)
    })
}
