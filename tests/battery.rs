//! The behaviour battery of the authoritative core (issue 2, point 4): every rule, each its own
//! test named after the rule or RFC section, against the real server over real sockets, over UDP
//! and TCP where the rule applies to both.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const A: u16 = 1;
const NS: u16 = 2;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SRV: u16 = 33;
const DS: u16 = 43;
const ANY: u16 = 255;

async fn battery(path: Path) -> TestServer {
    start_on_path(
        gslbd::config::Source::file(data("battery/battery.toml")),
        path,
    )
    .await
}

/// Every case of the battery runs twice: against the general path (`[limits] udp_fast_path =
/// false`) and against the fast path, where each UDP query is sent twice and both replies must be
/// the same bytes (the second comes from the prebuilt answer the first left).
macro_rules! on_both_paths {
    ($($case:ident),* $(,)?) => {
        mod general {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Path::General).await
                }
            )*
        }
        mod fast {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Path::Fast).await
                }
            )*
        }
    };
}

on_both_paths! {
    rfc1035_aa_set_and_question_case_preserved,
    cname_chain_in_zone_is_whole_in_answer,
    cname_chain_followed_into_other_served_zone,
    cname_to_unserved_name_stops_with_noerror,
    rfc6604_dangling_cname_gives_nxdomain_of_last_name,
    cname_loop_is_detected,
    cname_chain_limit_stops_at_twelve_hops,
    qtype_cname_is_not_chased,
    rfc4592_wildcard_synthesises_with_qname_as_owner,
    rfc4592_empty_non_terminal_blocks_wildcard,
    rfc4592_wildcard_cname_is_chased,
    rfc1034_referral_at_and_below_zone_cut,
    rfc4035_ds_at_cut_is_answered_by_parent,
    rfc2308_nxdomain_with_soa_and_negative_ttl,
    rfc2308_nodata_with_soa,
    refused_for_names_in_no_served_zone,
    rfc8482_any_is_answered_minimally,
    notimp_for_opcodes_other_than_query,
    formerr_for_malformed_queries,
    garbage_and_responses_are_dropped,
    rfc6891_opt_echoed_with_our_payload,
    rfc6891_badvers_for_edns_version_above_zero,
    rfc6891_two_opt_records_are_formerr,
    rfc7871_malformed_ecs_is_formerr_and_valid_ecs_is_echoed,
    rfc2181_tc_over_udp_and_whole_over_tcp,
    rfc2181_additional_that_does_not_fit_is_dropped_without_tc,
    rfc1035_additional_addresses_for_mx_srv_ns,
    refused_for_classes_other_than_in_and_for_axfr,
    rfc7766_several_queries_on_one_tcp_connection_then_idle_close,
    ipv6_listener_answers_the_same,
    rfc1995_3_ixfr_query_with_soa_in_authority_is_refused_not_formerr,
    rfc6891_7_formerr_for_no_question_carries_opt,
    rfc8945_5_2_unknown_tsig_key_is_notauth_badkey,
    rfc8945_5_1_tsig_not_last_is_formerr,
    rfc4892_chaos_identity_answered_version_hidden,
    rfc5001_nsid_answered_with_the_identity,
    rfc7873_5_2_2_malformed_cookie_is_formerr,
}

fn types(records: &[hickory_proto::rr::Record]) -> Vec<RecordType> {
    records.iter().map(|r| r.record_type()).collect()
}

fn owners(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.name.to_string().to_lowercase())
        .collect()
}

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

async fn rfc1035_aa_set_and_question_case_preserved(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let q = Q::new("wWw.ExAmPle.CoM", A);
        let bytes = raw(&s, "all", via, &q.bytes()).await.unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert!(
            m.metadata.authoritative,
            "AA on an authoritative answer ({via:?})"
        );
        assert!(m.metadata.recursion_desired, "RD copied from the query");
        assert!(
            !m.metadata.recursion_available,
            "no recursion on the authoritative side"
        );
        assert_eq!(m.metadata.id, 0x1234);
        // The question comes back byte for byte, case included.
        let qname = wire_name("wWw.ExAmPle.CoM");
        assert_eq!(&bytes[12..12 + qname.len()], &qname[..]);
        assert_eq!(
            lines(&m.answers),
            vec![
                "www.example.com. 300 A 192.0.2.10",
                "www.example.com. 300 A 192.0.2.11"
            ]
        );
    }
}

async fn cname_chain_in_zone_is_whole_in_answer(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let m = ask(&s, "all", via, &Q::new("c1.example.com", A)).await;
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(
            types(&m.answers),
            [
                RecordType::CNAME,
                RecordType::CNAME,
                RecordType::CNAME,
                RecordType::A,
                RecordType::A
            ]
        );
        assert_eq!(
            owners(&m.answers)[..4],
            [
                "c1.example.com.",
                "c2.example.com.",
                "c3.example.com.",
                "www.example.com."
            ]
        );
        assert!(m.authorities.is_empty() && m.additionals.is_empty());
    }
}

async fn cname_chain_followed_into_other_served_zone(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("xzone.example.com", A)).await;
    assert_eq!(
        lines(&m.answers),
        vec![
            "host.example.net. 3600 A 192.0.2.99",
            "xzone.example.com. 3600 CNAME host.example.net.",
        ]
    );
    // A listener that does not serve example.net stops at the CNAME.
    let m = ask(&s, "com-only", Via::Udp, &Q::new("xzone.example.com", A)).await;
    assert_eq!(
        lines(&m.answers),
        vec!["xzone.example.com. 3600 CNAME host.example.net."]
    );
    assert_eq!(rcode(&m), ResponseCode::NoError);
}

async fn cname_to_unserved_name_stops_with_noerror(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("ext.example.com", A)).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert_eq!(
        lines(&m.answers),
        vec!["ext.example.com. 3600 CNAME www.elsewhere.org."]
    );
    assert!(m.authorities.is_empty());
}

async fn rfc6604_dangling_cname_gives_nxdomain_of_last_name(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("dangling.example.com", A)).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(types(&m.answers), [RecordType::CNAME]);
    assert_eq!(types(&m.authorities), [RecordType::SOA]);
}

async fn cname_loop_is_detected(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let m = ask(&s, "all", via, &Q::new("loop1.example.com", A)).await;
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert_eq!(
            lines(&m.answers),
            vec![
                "loop1.example.com. 3600 CNAME loop2.example.com.",
                "loop2.example.com. 3600 CNAME loop1.example.com.",
            ]
        );
    }
}

async fn cname_chain_limit_stops_at_twelve_hops(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Tcp, &Q::new("l1.example.com", A)).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert_eq!(m.answers.len(), 12, "cname_chain = 12 records in the chain");
    assert!(
        m.answers
            .iter()
            .all(|r| r.record_type() == RecordType::CNAME)
    );
    // A chain within the limit is followed to the end.
    let m = ask(&s, "all", Via::Tcp, &Q::new("l5.example.com", A)).await;
    assert_eq!(m.answers.len(), 11);
    assert_eq!(m.answers.last().unwrap().record_type(), RecordType::A);
}

async fn qtype_cname_is_not_chased(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("c1.example.com", CNAME)).await;
    assert_eq!(
        lines(&m.answers),
        vec!["c1.example.com. 3600 CNAME c2.example.com."]
    );
}

async fn rfc4592_wildcard_synthesises_with_qname_as_owner(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        for name in ["x.wild.example.com", "a.b.c.wild.example.com"] {
            let m = ask(&s, "all", via, &Q::new(name, A)).await;
            assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
            assert!(m.metadata.authoritative);
            assert_eq!(
                lines(&m.answers),
                vec![format!("{name}. 3600 A 192.0.2.80")]
            );
        }
    }
    // A type the wildcard lacks is NODATA, not NXDOMAIN (RFC 4592 3.3.1).
    let m = ask(&s, "all", Via::Udp, &Q::new("x.wild.example.com", AAAA)).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(types(&m.authorities), [RecordType::SOA]);
    // MX from a wildcard also gets its additional address.
    let m = ask(&s, "all", Via::Udp, &Q::new("x.wild.example.com", MX)).await;
    assert_eq!(
        lines(&m.additionals),
        vec!["mail.example.com. 3600 A 192.0.2.25"]
    );
}

async fn rfc4592_empty_non_terminal_blocks_wildcard(path: Path) {
    let s = battery(path).await;
    // sub.wild exists (it has a child), so it is NODATA, and names below it do not match *.wild.
    let m = ask(&s, "all", Via::Udp, &Q::new("sub.wild.example.com", A)).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = ask(&s, "all", Via::Udp, &Q::new("x.sub.wild.example.com", A)).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    // The wildcard owner itself is an ordinary name.
    let m = ask(&s, "all", Via::Udp, &Q::new("*.wild.example.com", A)).await;
    assert_eq!(
        lines(&m.answers),
        vec!["*.wild.example.com. 3600 A 192.0.2.80"]
    );
}

async fn rfc4592_wildcard_cname_is_chased(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("img1.cw.example.com", A)).await;
    assert_eq!(
        lines(&m.answers),
        vec![
            "img1.cw.example.com. 3600 CNAME www.example.com.",
            "www.example.com. 300 A 192.0.2.10",
            "www.example.com. 300 A 192.0.2.11",
        ]
    );
}

async fn rfc1034_referral_at_and_below_zone_cut(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        for name in ["child.example.com", "deep.host.child.example.com"] {
            let m = ask(&s, "all", via, &Q::new(name, A)).await;
            assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
            assert!(
                !m.metadata.authoritative,
                "referrals are not authoritative ({name})"
            );
            assert!(m.answers.is_empty());
            assert_eq!(
                lines(&m.authorities),
                vec![
                    "child.example.com. 3600 NS ns.elsewhere.org.",
                    "child.example.com. 3600 NS ns1.child.example.com.",
                ]
            );
            // In-bailiwick glue only: ns.elsewhere.org has none here.
            assert_eq!(
                lines(&m.additionals),
                vec![
                    "ns1.child.example.com. 3600 A 192.0.2.54",
                    "ns1.child.example.com. 3600 AAAA 2001:db8::54",
                ]
            );
        }
    }
    // NS asked at the cut is a referral too: the child is authoritative for it.
    let m = ask(&s, "all", Via::Udp, &Q::new("child.example.com", NS)).await;
    assert!(!m.metadata.authoritative && m.answers.is_empty() && m.authorities.len() == 2);
}

async fn rfc4035_ds_at_cut_is_answered_by_parent(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("child.example.com", DS)).await;
    assert!(m.metadata.authoritative);
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(types(&m.authorities), [RecordType::SOA]);
}

async fn rfc2308_nxdomain_with_soa_and_negative_ttl(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let m = ask(&s, "all", via, &Q::new("nothere.example.com", A)).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        // SOA TTL 3600, MINIMUM 600 -> 600 (RFC 2308 section 3).
        assert_eq!(
            lines(&m.authorities),
            vec![
                "example.com. 600 SOA ns1.example.com. hostmaster.example.com. 1 3600 900 1209600 600"
            ]
        );
    }
    // example.net: SOA TTL 3600, MINIMUM 300 -> 300.
    let m = ask(&s, "all", Via::Udp, &Q::new("nothere.example.net", A)).await;
    assert_eq!(m.authorities[0].ttl, 300);
}

async fn rfc2308_nodata_with_soa(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let m = ask(&s, "all", via, &Q::new("mail.example.com", AAAA)).await;
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_eq!(types(&m.authorities), [RecordType::SOA]);
        assert_eq!(m.authorities[0].ttl, 600);
    }
}

async fn refused_for_names_in_no_served_zone(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let m = ask(&s, "all", via, &Q::new("www.example.org", A)).await;
        assert_eq!(rcode(&m), ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
    }
    // Served by the process, but not by this listener.
    let m = ask(&s, "com-only", Via::Udp, &Q::new("host.example.net", A)).await;
    assert_eq!(rcode(&m), ResponseCode::Refused);
}

async fn rfc8482_any_is_answered_minimally(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let m = ask(&s, "all", via, &Q::new("example.com", ANY)).await;
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        let t = types(&m.answers);
        assert!(!t.is_empty());
        assert!(t.iter().all(|x| *x == t[0]), "one RRset only, got {t:?}");
    }
}

async fn notimp_for_opcodes_other_than_query(path: Path) {
    let s = battery(path).await;
    for opcode in [1u16, 2, 4, 5] {
        let mut q = Q::new("www.example.com", A);
        q.flags = opcode << 11;
        let bytes = raw(&s, "all", Via::Udp, &q.bytes()).await.expect("a reply");
        // NOTIFY (4) is implemented (RFC 1996, for secondary zones): one that is not an SOA
        // NOTIFY for a secondary zone of ours from an allowed source is REFUSED.
        let want = if opcode == 4 { 5 } else { 4 };
        assert_eq!(bytes[3] & 0x0f, want, "RCODE for opcode {opcode}");
        assert_eq!((bytes[2] >> 3) & 0x0f, opcode as u8, "opcode copied");
        assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), 0x1234);
    }
}

async fn formerr_for_malformed_queries(path: Path) {
    let s = battery(path).await;
    let good = Q::new("www.example.com", A).bytes();
    let mut no_question = good[..12].to_vec();
    no_question[5] = 0; // QDCOUNT 0
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let truncated = good[..good.len() - 14].to_vec(); // cut inside the question/OPT
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let mut with_answer = good.clone();
    with_answer[7] = 1; // ANCOUNT 1 with nothing there
    let mut pointer_qname = good[..12].to_vec();
    pointer_qname.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    for (what, bytes) in [
        ("QDCOUNT=0", no_question),
        ("QDCOUNT=2", two_questions),
        ("truncated", truncated),
        ("trailing bytes", trailing),
        ("ANCOUNT=1", with_answer),
        ("compressed QNAME", pointer_qname),
    ] {
        for via in BOTH {
            let reply = raw(&s, "all", via, &bytes)
                .await
                .unwrap_or_else(|| panic!("no reply to {what}"));
            assert_eq!(reply[3] & 0x0f, 1, "FORMERR for {what} over {via:?}");
            assert_eq!(&reply[..2], &[0x12, 0x34], "ID echoed for {what}");
            assert!(reply[2] & 0x80 != 0, "QR set");
        }
    }
}

async fn garbage_and_responses_are_dropped(path: Path) {
    let s = battery(path).await;
    let mut response = Q::new("www.example.com", A).bytes();
    response[2] |= 0x80; // QR=1
    for (what, bytes) in [
        ("QR=1", response),
        ("runt", vec![1, 2, 3]),
        ("empty", vec![]),
    ] {
        assert!(
            raw(&s, "all", Via::Udp, &bytes).await.is_none(),
            "{what} must get no reply"
        );
    }
    // The server is still there.
    let m = ask(&s, "all", Via::Udp, &Q::new("www.example.com", A)).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
}

async fn rfc6891_opt_echoed_with_our_payload(path: Path) {
    let s = battery(path).await;
    let mut q = Q::new("www.example.com", A).payload(4096);
    q.edns.as_mut().unwrap().2 = true; // DO
    let m = ask(&s, "all", Via::Udp, &q).await;
    let edns = m.edns.as_ref().expect("OPT in the response");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);
    assert!(edns.flags().dnssec_ok, "DO copied (RFC 3225 3)");
    // No OPT in, no OPT out.
    let m = ask(&s, "all", Via::Udp, &Q::new("www.example.com", A).no_edns()).await;
    assert!(m.edns.is_none());
}

async fn rfc6891_badvers_for_edns_version_above_zero(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let mut q = Q::new("www.example.com", A);
        q.edns.as_mut().unwrap().1 = 1;
        let m = ask(&s, "all", via, &q).await;
        // 16 is BADVERS in OPT context (hickory names it BADSIG, which shares the code).
        assert_eq!(u16::from(rcode(&m)), 16);
        assert!(m.answers.is_empty());
        assert_eq!(m.edns.as_ref().unwrap().version(), 0);
    }
}

async fn rfc6891_two_opt_records_are_formerr(path: Path) {
    let s = battery(path).await;
    let mut bytes = Q::new("www.example.com", A).bytes();
    let opt = bytes[bytes.len() - 11..].to_vec();
    bytes.extend_from_slice(&opt);
    bytes[11] = 2;
    let reply = raw(&s, "all", Via::Udp, &bytes).await.unwrap();
    assert_eq!(reply[3] & 0x0f, 1);
}

async fn rfc7871_malformed_ecs_is_formerr_and_valid_ecs_is_echoed(path: Path) {
    let s = battery(path).await;
    // family 1, source /24, scope 0, 192.0.2
    let ecs = |family: u16, source: u8, scope: u8, addr: &[u8]| {
        let mut o = vec![0, 8];
        o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.push(source);
        o.push(scope);
        o.extend_from_slice(addr);
        o
    };
    let mut q = Q::new("www.example.com", A);
    q.edns.as_mut().unwrap().3 = ecs(1, 24, 0, &[192, 0, 2]);
    let m = ask(&s, "all", Via::Udp, &q).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    let opt = format!("{:?}", m.edns.as_ref().unwrap().options());
    assert!(opt.contains("Subnet"), "ECS echoed: {opt}");
    for (what, bad) in [
        (
            "address longer than the prefix",
            ecs(1, 16, 0, &[192, 0, 2]),
        ),
        ("non-zero scope in a query", ecs(1, 24, 8, &[192, 0, 2])),
        ("unknown family", ecs(3, 8, 0, &[1])),
        ("bits set past the prefix", ecs(1, 20, 0, &[192, 0, 0xff])),
        ("prefix over 32", ecs(1, 33, 0, &[1, 2, 3, 4, 5])),
    ] {
        let mut q = Q::new("www.example.com", A);
        q.edns.as_mut().unwrap().3 = bad;
        let m = ask(&s, "all", Via::Udp, &q).await;
        assert_eq!(rcode(&m), ResponseCode::FormErr, "{what}");
    }
}

async fn rfc2181_tc_over_udp_and_whole_over_tcp(path: Path) {
    let s = battery(path).await;
    // ~1.6 kB of TXT: over 1232 bytes.
    let m = ask(&s, "all", Via::Udp, &Q::new("big.example.com", TXT)).await;
    assert!(m.metadata.truncation, "TC set when the answer does not fit");
    assert!(m.answers.is_empty());
    assert!(m.edns.is_some(), "OPT kept in the truncated answer");
    let m = ask(&s, "all", Via::Tcp, &Q::new("big.example.com", TXT)).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 8);
    // Without EDNS the limit is 512 bytes (RFC 1035 4.2.1).
    let m = ask(
        &s,
        "all",
        Via::Udp,
        &Q::new("big.example.com", TXT).no_edns(),
    )
    .await;
    assert!(m.metadata.truncation);
    // A small payload is raised to 512, not honoured below it (RFC 6891 6.2.5).
    let m = ask(
        &s,
        "all",
        Via::Udp,
        &Q::new("www.example.com", A).payload(100),
    )
    .await;
    assert!(!m.metadata.truncation && m.answers.len() == 2);
}

async fn rfc2181_additional_that_does_not_fit_is_dropped_without_tc(path: Path) {
    let s = battery(path).await;
    let m = ask(
        &s,
        "all",
        Via::Udp,
        &Q::new("manymx.example.com", MX).no_edns(),
    )
    .await;
    assert!(
        !m.metadata.truncation,
        "ANSWER fits; only ADDITIONAL is cut"
    );
    assert_eq!(m.answers.len(), 20);
    assert!(m.additionals.len() < 40);
    let m = ask(&s, "all", Via::Tcp, &Q::new("manymx.example.com", MX)).await;
    assert_eq!(m.additionals.len(), 40, "all of it over TCP");
}

async fn rfc1035_additional_addresses_for_mx_srv_ns(path: Path) {
    let s = battery(path).await;
    let m = ask(&s, "all", Via::Udp, &Q::new("example.com", MX)).await;
    assert_eq!(
        lines(&m.additionals),
        vec!["mail.example.com. 3600 A 192.0.2.25"]
    );
    let m = ask(&s, "all", Via::Udp, &Q::new("_sip._tcp.example.com", SRV)).await;
    assert_eq!(
        lines(&m.additionals),
        vec!["sip.example.com. 3600 A 192.0.2.40"]
    );
    // NS: ns1 is in this zone, ns2.example.net in another zone served here.
    let m = ask(&s, "all", Via::Udp, &Q::new("example.com", NS)).await;
    assert!(m.metadata.authoritative);
    assert_eq!(
        lines(&m.additionals),
        vec![
            "ns1.example.com. 3600 A 192.0.2.53",
            "ns2.example.net. 3600 A 192.0.2.54",
        ]
    );
    let m = ask(&s, "all", Via::Udp, &Q::new("example.com", SOA)).await;
    assert_eq!(types(&m.answers), [RecordType::SOA]);
}

async fn refused_for_classes_other_than_in_and_for_axfr(path: Path) {
    let s = battery(path).await;
    let mut q = Q::new("version.bind", TXT);
    q.qclass = 3; // CHAOS
    let m = ask(&s, "all", Via::Udp, &q).await;
    assert_eq!(rcode(&m), ResponseCode::Refused);
    let m = ask(&s, "all", Via::Tcp, &Q::new("example.com", 252)).await;
    assert_eq!(rcode(&m), ResponseCode::Refused);
}

async fn rfc7766_several_queries_on_one_tcp_connection_then_idle_close(path: Path) {
    let s = battery(path).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr("all", "tcp"))
        .await
        .unwrap();
    // Pipelined: three queries written before any reply is read.
    for (i, name) in ["www.example.com", "mail.example.com", "nothere.example.com"]
        .iter()
        .enumerate()
    {
        let mut q = Q::new(name, A);
        q.id = i as u16;
        tcp_send(&mut conn, &q.bytes()).await;
    }
    let mut rcodes = Vec::new();
    for _ in 0..3 {
        let m = Message::from_vec(&tcp_recv(&mut conn).await.expect("reply")).unwrap();
        rcodes.push((m.metadata.id, rcode(&m)));
    }
    rcodes.sort_by_key(|r| r.0);
    assert_eq!(
        rcodes,
        vec![
            (0, ResponseCode::NoError),
            (1, ResponseCode::NoError),
            (2, ResponseCode::NXDomain)
        ]
    );
    // tcp_idle_timeout_ms = 1000 in battery.toml: the server closes an idle connection.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        conn.read(&mut b).await
    })
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "connection closed by the server: {closed:?}"
    );
}

async fn ipv6_listener_answers_the_same(path: Path) {
    let s = battery(path).await;
    let v6 = s
        .addrs
        .iter()
        .find(|a| a.addr.is_ipv6() && a.proto == "udp")
        .unwrap()
        .addr;
    let bytes = udp_raw(v6, &Q::new("www.example.com", A).bytes())
        .await
        .unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        lines(&m.answers),
        vec![
            "www.example.com. 300 A 192.0.2.10",
            "www.example.com. 300 A 192.0.2.11"
        ]
    );
}

/// `[limits] udp_workers` on a fixed port: one SO_REUSEPORT socket per worker, each served by its
/// own thread; clients spread over them by the kernel all get answers. (Tests elsewhere use port 0,
/// where the workers share one socket.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_workers_share_a_fixed_port() {
    let dir = tempfile::tempdir().unwrap();
    // A port free on this address for UDP and TCP right now (released before gslbd binds it).
    let port = loop {
        let u = std::net::UdpSocket::bind("127.0.62.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.62.1", p)).is_ok() {
            break p;
        }
    };
    std::fs::write(
        dir.path().join("example.com.zone"),
        format!("{EXAMPLE_ZONE_HEAD}www IN A 192.0.2.80\n"),
    )
    .unwrap();
    let path = dir.path().join("gslbd.toml");
    std::fs::write(
        &path,
        format!(
            "[limits]\nudp_workers = 3\n\n[[zone]]\nname = \"example.com.\"\nfile = \"example.com.zone\"\n\n\
             [[listener]]\nname = \"all\"\naddresses = [\"127.0.62.1:{port}\"]\nzones = [\"*\"]\n"
        ),
    )
    .unwrap();
    let server = gslbd::server::Server::bind(gslbd::config::Source::file(&path))
        .await
        .expect("binds three workers on one port");
    let addrs = server.addresses();
    assert_eq!(
        addrs.iter().filter(|a| a.proto == "udp").count(),
        1,
        "one address, however many sockets: {addrs:?}"
    );
    let handle = server.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let target: std::net::SocketAddr = format!("127.0.62.1:{port}").parse().unwrap();
    // 60 clients, each from its own source port: the kernel hashes them over the three sockets.
    for i in 0..60u16 {
        let mut q = Q::new("www.example.com", 1);
        q.id = i;
        let m = Message::from_vec(&udp_raw(target, &q.bytes()).await.expect("an answer")).unwrap();
        assert_eq!(m.metadata.id, i);
        assert_eq!(m.answers.len(), 1);
    }
    assert_eq!(handle.served(), 60);
    let _ = tx.send(());
}

/// The RFC 1995 3 shape: the question, and the client's SOA in AUTHORITY (NSCOUNT 1).
fn ixfr_query(serial: u32) -> Vec<u8> {
    let mut b = Q::new("example.com", 251).no_edns().bytes();
    b[9] = 1; // NSCOUNT
    b.extend_from_slice(&[0xc0, 12]); // owner: the question's name
    b.extend_from_slice(&6u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    let mut rdata = vec![0, 0]; // MNAME ., RNAME .
    rdata.extend_from_slice(&serial.to_be_bytes());
    rdata.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    b.extend_from_slice(&rdata);
    b
}

async fn rfc1995_3_ixfr_query_with_soa_in_authority_is_refused_not_formerr(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let reply = raw(&s, "all", via, &ixfr_query(1)).await.expect("a reply");
        // REFUSED until zone transfer exists, as NSD and Knot answer without an ACL allowing it.
        assert_eq!(reply[3] & 0x0f, 5, "REFUSED for IXFR over {via:?}");
        // Any other type with an AUTHORITY record is still malformed (RFC 1035 4.1.1).
        let mut not_ixfr = ixfr_query(1);
        let qtype_at = 12 + wire_name("example.com").len();
        not_ixfr[qtype_at..qtype_at + 2].copy_from_slice(&6u16.to_be_bytes());
        let reply = raw(&s, "all", via, &not_ixfr).await.expect("a reply");
        assert_eq!(
            reply[3] & 0x0f,
            1,
            "FORMERR for SOA with NSCOUNT 1 over {via:?}"
        );
    }
}

async fn rfc6891_7_formerr_for_no_question_carries_opt(path: Path) {
    let s = battery(path).await;
    let good = Q::new("www.example.com", A).payload(4096).bytes();
    // Header with QDCOUNT 0 and ARCOUNT 1, then only the OPT record.
    let qlen = wire_name("www.example.com").len() + 4;
    let mut bytes = good[..12].to_vec();
    bytes[5] = 0;
    bytes.extend_from_slice(&good[12 + qlen..]);
    for via in BOTH {
        let reply = raw(&s, "all", via, &bytes).await.expect("a reply");
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(rcode(&m), ResponseCode::FormErr, "over {via:?}");
        assert!(m.queries.is_empty());
        let edns = m
            .edns
            .as_ref()
            .expect("the FORMERR carries an OPT (RFC 6891 7)");
        assert_eq!(edns.max_payload(), 1232, "our payload, not the client's");
    }
    // Without an OPT in the query there is none in the reply.
    let mut bare = good[..12].to_vec();
    bare[5] = 0;
    bare[11] = 0;
    let reply = raw(&s, "all", Via::Udp, &bare).await.expect("a reply");
    assert_eq!(reply[3] & 0x0f, 1);
    assert_eq!(&reply[10..12], &[0, 0], "no OPT without one in the query");
}

/// A TSIG record (RFC 8945 4.2) for key `key` with a 32-byte MAC: the MAC cannot be checked here
/// (the key is unknown), so its bytes do not matter.
fn tsig_record(key: &str, original_id: u16) -> Vec<u8> {
    let mut r = wire_name(key);
    r.extend_from_slice(&250u16.to_be_bytes());
    r.extend_from_slice(&255u16.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes());
    let mut rdata = wire_name("hmac-sha256");
    rdata.extend_from_slice(&[0, 0, 0x69, 0x4f, 0x1e, 0x00]); // time signed
    rdata.extend_from_slice(&300u16.to_be_bytes()); // fudge
    rdata.extend_from_slice(&32u16.to_be_bytes());
    rdata.extend_from_slice(&[0xab; 32]);
    rdata.extend_from_slice(&original_id.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes()); // error
    rdata.extend_from_slice(&0u16.to_be_bytes()); // other len
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

async fn rfc8945_5_2_unknown_tsig_key_is_notauth_badkey(path: Path) {
    let s = battery(path).await;
    let mut bytes = Q::new("www.example.com", A).bytes();
    bytes[11] = 2; // OPT, then TSIG last
    bytes.extend_from_slice(&tsig_record("transfer-key", 0x1234));
    for via in BOTH {
        let reply = raw(&s, "all", via, &bytes).await.expect("a reply");
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(u16::from(rcode(&m)), 9, "NOTAUTH over {via:?}");
        assert!(m.answers.is_empty(), "no unsigned answer to a signed query");
        // The TSIG record is the last one: key name, BADKEY, no MAC (RFC 8945 5.3.2).
        // Echoed with no MAC: the request's record less its 32 MAC bytes.
        let tail = tsig_record("transfer-key", 0x1234);
        let at = reply.len() - (tail.len() - 32);
        let key = wire_name("transfer-key");
        assert_eq!(
            &reply[at..at + key.len()],
            &key[..],
            "owner is the key name"
        );
        let end = reply.len();
        assert_eq!(
            &reply[end - 4..end - 2],
            &17u16.to_be_bytes(),
            "error BADKEY"
        );
        assert_eq!(
            &reply[end - 6..end - 4],
            &0x1234u16.to_be_bytes(),
            "original ID"
        );
        assert_eq!(&reply[end - 8..end - 6], &0u16.to_be_bytes(), "MAC size 0");
        assert_eq!(&reply[10..12], &[0, 2], "ADDITIONAL: OPT, then TSIG");
    }
}

async fn rfc8945_5_1_tsig_not_last_is_formerr(path: Path) {
    let s = battery(path).await;
    // TSIG first, then the OPT: TSIG must be the last record.
    let q = Q::new("www.example.com", A).no_edns();
    let mut bytes = q.bytes();
    bytes[11] = 2;
    bytes.extend_from_slice(&tsig_record("k", 0x1234));
    bytes.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    let reply = raw(&s, "all", Via::Udp, &bytes).await.expect("a reply");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
}

fn txt_of(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(t) => t
                .txt_data
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<String>(),
            other => format!("{other:?}"),
        })
        .collect()
}

async fn rfc4892_chaos_identity_answered_version_hidden(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        for name in ["id.server", "HOSTNAME.bind"] {
            let mut q = Q::new(name, TXT);
            q.qclass = 3;
            let m = ask(&s, "all", via, &q).await;
            assert_eq!(rcode(&m), ResponseCode::NoError, "{name} over {via:?}");
            assert_eq!(txt_of(&m), ["battery-ns1"], "{name}");
            assert_eq!(u16::from(m.answers[0].dns_class), 3, "class CH");
            assert!(m.metadata.authoritative);
        }
        // No version configured: hidden, as NSD's hide-version.
        for name in ["version.bind", "version.server", "authors.bind"] {
            let mut q = Q::new(name, TXT);
            q.qclass = 3;
            let m = ask(&s, "all", via, &q).await;
            assert_eq!(rcode(&m), ResponseCode::Refused, "{name} over {via:?}");
        }
        // The identity is only for TXT (and ANY) in CHAOS.
        let mut q = Q::new("id.server", A);
        q.qclass = 3;
        assert_eq!(rcode(&ask(&s, "all", via, &q).await), ResponseCode::Refused);
    }
}

/// The NSID option of a reply's OPT (RFC 5001), if any, read from the wire: the OPT is the last
/// record, so its options run to the end of the message.
fn nsid_of(reply: &[u8]) -> Option<Vec<u8>> {
    Message::from_vec(reply).ok()?.edns.as_ref()?;
    // Walk the options back from the end: find a (code 3, len) header whose data ends the reply.
    (0..reply.len().min(600)).find_map(|n| {
        let at = reply.len().checked_sub(n + 4)?;
        let code = u16::from_be_bytes([reply[at], reply[at + 1]]);
        let len = u16::from_be_bytes([reply[at + 2], reply[at + 3]]) as usize;
        (code == 3 && len == n).then(|| reply[at + 4..].to_vec())
    })
}

async fn rfc5001_nsid_answered_with_the_identity(path: Path) {
    let s = battery(path).await;
    for via in BOTH {
        let mut q = Q::new("www.example.com", A);
        q.edns.as_mut().unwrap().3 = vec![0, 3, 0, 0]; // NSID, empty
        // Twice over UDP: the second would come from the fast path's tables without NSID.
        for _ in 0..2 {
            let reply = raw(&s, "all", via, &q.bytes()).await.expect("a reply");
            let m = Message::from_vec(&reply).unwrap();
            assert_eq!(rcode(&m), ResponseCode::NoError);
            assert_eq!(m.answers.len(), 2, "the answer itself is unchanged");
            assert_eq!(
                nsid_of(&reply).as_deref(),
                Some(&b"battery-ns1"[..]),
                "over {via:?}"
            );
        }
        // Not asked, not given.
        let reply = raw(&s, "all", via, &Q::new("www.example.com", A).bytes())
            .await
            .expect("a reply");
        assert_eq!(nsid_of(&reply), None);
    }
}

async fn rfc7873_5_2_2_malformed_cookie_is_formerr(path: Path) {
    let s = battery(path).await;
    for (len, ok) in [
        (8usize, true),
        (16, true),
        (40, true),
        (7, false),
        (12, false),
        (41, false),
    ] {
        let mut q = Q::new("www.example.com", A);
        let mut opt = vec![0, 10];
        opt.extend_from_slice(&(len as u16).to_be_bytes());
        opt.extend(std::iter::repeat_n(0x5a, len));
        q.edns.as_mut().unwrap().3 = opt;
        for via in BOTH {
            let reply = raw(&s, "all", via, &q.bytes()).await.expect("a reply");
            let rc = reply[3] & 0x0f;
            if ok {
                assert_eq!(rc, 0, "a {len}-byte cookie is well formed ({via:?})");
            } else {
                assert_eq!(rc, 1, "a {len}-byte cookie is FORMERR ({via:?})");
                let m = Message::from_vec(&reply).unwrap();
                assert!(m.edns.is_some(), "with an OPT");
            }
        }
    }
}
