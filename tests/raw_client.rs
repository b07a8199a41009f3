//! A client written from raw bytes (PROTOCOL.md §1–§2) against an
//! in-process server: every reply is checked byte for byte.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use factory::server::{Server, ServerConfig};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn server() -> Server {
    Server::start(ServerConfig::loopback(0, 0)).unwrap()
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn reply(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn write_and_read_golden_bytes() {
    let server = server();
    let mut s = connect(&server);
    s.write_all(&hex("43 4c 49 45 4e 54 00 00")).unwrap();

    // Read of an unknown customer.
    s.write_all(&hex("00 00 00 07 ff ff ff ff 00 00 00 02"))
        .unwrap();
    assert_eq!(reply(&mut s, 8), hex("00 00 00 07 ff ff ff ff"));

    // Write (7, 42): echoed, engineer 0 (the server's first connection), admin 0.
    s.write_all(&hex("00 00 00 07 00 00 00 2a 00 00 00 01"))
        .unwrap();
    assert_eq!(
        reply(&mut s, 20),
        hex("00 00 00 07 00 00 00 2a 00 00 00 01 00 00 00 00 00 00 00 00")
    );
    // Read it back; the order number in a read request is ignored.
    s.write_all(&hex("00 00 00 07 00 00 03 e8 00 00 00 02"))
        .unwrap();
    assert_eq!(reply(&mut s, 8), hex("00 00 00 07 00 00 00 2a"));

    // Negative ids and orders are plain values.
    s.write_all(&hex("ff ff ff fe 80 00 00 00 00 00 00 01"))
        .unwrap();
    assert_eq!(
        reply(&mut s, 20),
        hex("ff ff ff fe 80 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00")
    );

    // customer_id -1 ends the session without a reply.
    s.write_all(&hex("ff ff ff ff 00 00 00 00 00 00 00 01"))
        .unwrap();
    assert!(common::closed_without_reply(&mut s));
    assert_eq!(server.last_order(-2), i32::MIN);
}

#[test]
fn engineer_id_counts_connections() {
    let server = server();
    let mut first = connect(&server);
    first.write_all(b"CLIENT\0\0").unwrap();
    first
        .write_all(&hex("00 00 00 01 00 00 00 01 00 00 00 01"))
        .unwrap();
    assert_eq!(&reply(&mut first, 20)[12..16], &[0, 0, 0, 0]);
    let mut second = connect(&server);
    second.write_all(b"CLIENT\0\0").unwrap();
    second
        .write_all(&hex("00 00 00 01 00 00 00 02 00 00 00 01"))
        .unwrap();
    assert_eq!(&reply(&mut second, 20)[12..16], &[0, 0, 0, 1]);
}

#[test]
fn requests_split_across_packets_are_reassembled() {
    let server = server();
    let mut s = connect(&server);
    s.set_nodelay(true).unwrap();
    for byte in hex("43 4c 49 45 4e 54 00 00 00 00 00 07 00 00 00 2a 00 00 00 01") {
        s.write_all(&[byte]).unwrap();
    }
    assert_eq!(
        &reply(&mut s, 20)[..12],
        &hex("00 00 00 07 00 00 00 2a 00 00 00 01")[..]
    );
}

#[test]
fn unknown_request_type_closes_instead_of_hanging() {
    let server = server();
    let mut s = connect(&server);
    s.write_all(b"CLIENT\0\0").unwrap();
    s.write_all(&hex("00 00 00 07 00 00 00 2a 00 00 00 07"))
        .unwrap();
    assert!(common::closed_without_reply(&mut s));
    // Everyone else is still served.
    let mut c = common::client(server.local_addr().port());
    assert_eq!(c.order(7, 1).unwrap().order_number, 1);
}

#[test]
fn unknown_tag_closes() {
    let server = server();
    let mut s = connect(&server);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(common::closed_without_reply(&mut s));
    let mut c = common::client(server.local_addr().port());
    assert_eq!(c.read(1).unwrap().last_order, -1);
}
