//! DNS: a query to a tiny resolver of ours listening inside a network
//! namespace the test creates (removed on drop), queried from inside it.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::{Harness, Netns};
use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, ResourceRecord, TYPE};
use vigie_event::Payload;

#[test]
fn dns_query_and_answer_in_a_namespace_are_linked_to_the_process() {
    let ns = Netns::new("dns");
    let mut h = Harness::start(common::cfg());
    let name = ns.0.clone();
    let tid = std::thread::spawn(move || {
        // This thread only: move into the namespace.
        common::enter_netns(&name);
        let server = UdpSocket::bind("127.0.0.1:53").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut q = Packet::new_query(0x1234);
        q.questions.push(Question::new(
            Name::new_unchecked("exfil.vigie.test"),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        client
            .send_to(&q.build_bytes_vec().unwrap(), "127.0.0.1:53")
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        let query = Packet::parse(&buf[..n]).unwrap();
        let mut reply = query.into_reply();
        reply.set_flags(PacketFlag::RESPONSE);
        reply.answers.push(ResourceRecord::new(
            Name::new_unchecked("exfil.vigie.test"),
            CLASS::IN,
            60,
            RData::A(A::from(Ipv4Addr::new(10, 9, 8, 7))),
        ));
        server
            .send_to(&reply.build_bytes_vec().unwrap(), from)
            .unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert!(n > 12);
        unsafe { libc::gettid() as u32 }
    })
    .join()
    .unwrap();
    let me = std::process::id();
    let q = h
        .wait_for(Duration::from_secs(10), |e| matches!(&e.payload, Payload::Dns(d) if d.dns.kind == "query" && d.dns.question.name == "exfil.vigie.test" && d.process.pid == me))
        .expect("DNS query event");
    let Payload::Dns(d) = &q.payload else {
        unreachable!()
    };
    assert_eq!(d.destination.port, Some(53));
    assert_eq!(d.process.thread.as_ref().map(|t| t.id), Some(tid));
    let a = h
        .wait_for(Duration::from_secs(10), |e| matches!(&e.payload, Payload::Dns(d) if d.dns.kind == "answer" && d.dns.question.name == "exfil.vigie.test"))
        .expect("DNS answer event");
    let Payload::Dns(d) = &a.payload else {
        unreachable!()
    };
    assert_eq!(
        d.dns.resolved_ip,
        vec!["10.9.8.7".parse::<std::net::IpAddr>().unwrap()]
    );
}
