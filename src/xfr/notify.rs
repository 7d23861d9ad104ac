//! NOTIFY (RFC 1996) to a zone's secondaries when the serving snapshot changes its serial: one
//! task per (zone, target), over UDP, retried with a doubling timeout until the secondary answers
//! (3.6), at most `TRIES` times; the answer to a signed NOTIFY counts only when its TSIG verifies
//! (RFC 8945 5.3). A newer change to the same zone does not wait for an older
//! NOTIFY: both run, and the secondary asks for the SOA either way (3.11).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::{COUNTERS, NotifyTarget, soa_rec};
use crate::snapshot::Snapshot;

/// Attempts per NOTIFY before giving up (RFC 1996 3.6 leaves the count to the implementation;
/// BIND tries 5 times).
const TRIES: u32 = 5;
/// The first attempt's wait for the answer; each retry doubles it.
const FIRST_WAIT: Duration = Duration::from_millis(1000);

/// Sends NOTIFY for every transferable zone of `new` whose serial differs from `old`'s (or that
/// `old` did not have). Call from within the tokio runtime.
pub fn after_swap(old: Option<&Snapshot>, new: &Arc<Snapshot>) {
    for (i, zone) in new.zones.iter().enumerate() {
        let x = &new.xfr[i];
        if x.notify.is_empty() {
            continue;
        }
        let before = old.and_then(|o| o.zones.iter().find(|z| z.origin_key == zone.origin_key));
        if before.is_some_and(|b| b.serial == zone.serial) {
            continue;
        }
        let message = notify_message(zone);
        // From an address of a listener serving the zone, as secondaries' ACLs name the
        // primary's address (BIND's notify-source); the system's choice when there is none.
        let sources: Vec<std::net::IpAddr> = new
            .listeners
            .iter()
            .zip(&new.views)
            .filter(|(_, v)| {
                v.find(&zone.origin_key)
                    .is_some_and(|z| z.origin_key == zone.origin_key)
            })
            .flat_map(|(l, _)| l.addresses.iter().map(|a| a.ip()))
            .filter(|ip| !ip.is_unspecified())
            .collect();
        for t in &x.notify {
            let name = zone.origin.to_string();
            let from = sources
                .iter()
                .copied()
                .find(|ip| ip.is_ipv4() == t.addr.is_ipv4());
            let key = t.key.as_deref().and_then(|k| new.keys.get(k)).cloned();
            tokio::spawn(send(
                name,
                t.clone(),
                from,
                key,
                message.clone(),
                zone.serial,
            ));
        }
    }
}

/// The NOTIFY message for `zone`: opcode 4, AA, the zone's SOA question and its current SOA in
/// ANSWER (RFC 1996 3.7: a hint the secondary may use). The ID is set per attempt.
fn notify_message(zone: &crate::zone::Zone) -> Vec<u8> {
    let soa = soa_rec(zone);
    let mut m = Vec::with_capacity(64 + soa.rdata.len() + 2 * soa.owner.len());
    m.extend_from_slice(&[0, 0, 0x24, 0x00, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&soa.owner);
    m.extend_from_slice(&[0, 6, 0, 1]);
    m.extend_from_slice(&soa.owner);
    m.extend_from_slice(&[0, 6, 0, 1]);
    m.extend_from_slice(&soa.ttl.to_be_bytes());
    m.extend_from_slice(&(soa.rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&soa.rdata);
    m
}

async fn send(
    zone: String,
    target: NotifyTarget,
    from: Option<std::net::IpAddr>,
    key: Option<std::sync::Arc<crate::tsig::Key>>,
    message: Vec<u8>,
    serial: u32,
) {
    let any: std::net::IpAddr = if target.addr.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let local = SocketAddr::new(from.unwrap_or(any), 0);
    let sock = match tokio::net::UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%zone, target = %target.addr, "NOTIFY: cannot open a socket: {e}");
            return;
        }
    };
    let mut wait = FIRST_WAIT;
    let mut buf = vec![0u8; 4096];
    for attempt in 1..=TRIES {
        let id: u16 = rand::random();
        let mut message = message.clone();
        message[0..2].copy_from_slice(&id.to_be_bytes());
        // RFC 8945: a signed NOTIFY, for secondaries whose ACL names the key; its answer must
        // be signed with the key too (5.3), or it may not come from the secondary at all.
        let mut verifier = key
            .as_ref()
            .map(|k| crate::tsig::sign_request(&mut message, k, crate::tsig::now()));
        COUNTERS.notify[0].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = sock.send_to(&message, target.addr).await {
            debug!(%zone, target = %target.addr, attempt, "NOTIFY send failed: {e}");
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
            let Ok(Ok((n, from))) = got else { break };
            let r = &buf[..n];
            // The answer: from the target, our ID, QR set, opcode NOTIFY (RFC 1996 4.7).
            if from != target.addr || n < 12 || r[0..2] != id.to_be_bytes() {
                continue;
            }
            if r[2] & 0x80 == 0 || (r[2] >> 3) & 0xf != 4 {
                continue;
            }
            if let Some(v) = verifier.as_mut()
                && let Err(e) = v.verify(r, crate::tsig::now())
            {
                // Not an acknowledgement: wait on, then retry.
                warn!(%zone, target = %target.addr, attempt, "NOTIFY answer rejected: TSIG: {e}");
                continue;
            }
            COUNTERS.notify[1].fetch_add(1, Ordering::Relaxed);
            let rc = r[3] & 0xf;
            if rc == 0 {
                info!(%zone, serial, target = %target.addr, "NOTIFY acknowledged");
            } else {
                // An answer with an error still ends the retries: the secondary heard us.
                warn!(%zone, serial, target = %target.addr, rcode = rc, "NOTIFY answered with an error");
            }
            return;
        }
        wait *= 2;
    }
    COUNTERS.notify[2].fetch_add(1, Ordering::Relaxed);
    warn!(%zone, serial, target = %target.addr, "NOTIFY not acknowledged after {TRIES} tries");
}
