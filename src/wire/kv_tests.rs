//! Golden bytes and round trips of the v2 client frames (`wire::kv`); the
//! hex strings are the ones `docs/protocol.md` §9 shows.

use super::kv::*;
use super::testing::hex;
use super::Tag;

fn limits() -> KvLimits {
    KvLimits::default()
}

fn encoded_request(id: u64, op: KvOp) -> Vec<u8> {
    let mut out = Vec::new();
    KvRequest { id, op }.encode(&mut out);
    out
}

fn encoded_response(response: &KvResponse) -> Vec<u8> {
    let mut out = Vec::new();
    response.encode(&mut out);
    out
}

fn round_trip_request(op: KvOp) {
    let bytes = encoded_request(7, op.clone());
    let len = limits()
        .check_length(bytes[..4].try_into().unwrap())
        .expect("length accepted");
    assert_eq!(len, bytes.len() - 4);
    let back = KvRequest::decode(&bytes[4..], &limits()).expect("decodes");
    assert_eq!(back, KvRequest { id: 7, op });
}

#[test]
fn the_tag_is_no_other_roles_tag() {
    assert_eq!(KV_TAG.to_vec(), hex("46 4b 56 00 00 00 00 02"));
    assert_eq!(Tag::decode(&KV_TAG), None, "v1 decoding must not claim it");
}

#[test]
fn golden_get_request() {
    let bytes = encoded_request(
        1,
        KvOp::Get {
            key: b"ab".to_vec(),
        },
    );
    assert_eq!(
        bytes,
        hex("00 00 00 0d  00 00 00 00 00 00 00 01  01  00 02 61 62")
    );
}

#[test]
fn golden_put_request() {
    let bytes = encoded_request(
        2,
        KvOp::Put {
            key: b"k".to_vec(),
            value: b"xyz".to_vec(),
        },
    );
    assert_eq!(
        bytes,
        hex("00 00 00 13  00 00 00 00 00 00 00 02  02  00 01 6b  00 00 00 03 78 79 7a")
    );
}

#[test]
fn golden_cas_request() {
    let bytes = encoded_request(
        3,
        KvOp::Cas {
            key: b"k".to_vec(),
            expected: NO_VERSION,
            value: b"v".to_vec(),
        },
    );
    assert_eq!(
        bytes,
        hex("00 00 00 19  00 00 00 00 00 00 00 03  06  00 01 6b  ff ff ff ff ff ff ff ff  00 00 00 01 76")
    );
}

#[test]
fn golden_scan_request() {
    let bytes = encoded_request(
        4,
        KvOp::Scan {
            start: Vec::new(),
            limit: 10,
        },
    );
    assert_eq!(
        bytes,
        hex("00 00 00 0f  00 00 00 00 00 00 00 04  07  00 00  00 00 00 0a")
    );
}

#[test]
fn golden_responses() {
    let got = KvResponse {
        id: 1,
        op: 1,
        status: KvStatus::Ok,
        body: KvBody::Value {
            version: 5,
            value: b"hi".to_vec(),
        },
    };
    assert_eq!(
        encoded_response(&got),
        hex("00 00 00 18  00 00 00 00 00 00 00 01  01  00  00 00 00 00 00 00 00 05  00 00 00 02 68 69")
    );
    let missing = KvResponse {
        id: 1,
        op: 1,
        status: KvStatus::NotFound,
        body: KvBody::Empty,
    };
    assert_eq!(
        encoded_response(&missing),
        hex("00 00 00 0a  00 00 00 00 00 00 00 01  01  01")
    );
    let scanned = KvResponse {
        id: 4,
        op: 7,
        status: KvStatus::Ok,
        body: KvBody::Items {
            items: vec![KvItem {
                key: b"a".to_vec(),
                version: 9,
                value: Vec::new(),
            }],
            more: true,
        },
    };
    assert_eq!(
        encoded_response(&scanned),
        hex("00 00 00 1e  00 00 00 00 00 00 00 04  07  00  00 00 00 01  00 01 61  00 00 00 00 00 00 00 09  00 00 00 00  01")
    );
}

#[test]
fn every_op_round_trips_including_empty_binary_and_maximum_sizes() {
    let max_key = vec![0xff; limits().max_key];
    let max_value = vec![0u8; limits().max_value];
    let binary = (0..=255u8).collect::<Vec<u8>>();
    for (key, value) in [
        (Vec::new(), Vec::new()),
        (binary.clone(), binary.clone()),
        (max_key.clone(), max_value.clone()),
    ] {
        round_trip_request(KvOp::Get { key: key.clone() });
        round_trip_request(KvOp::Delete { key: key.clone() });
        round_trip_request(KvOp::Put {
            key: key.clone(),
            value: value.clone(),
        });
        round_trip_request(KvOp::Create {
            key: key.clone(),
            value: value.clone(),
        });
        round_trip_request(KvOp::Update {
            key: key.clone(),
            value: value.clone(),
        });
        round_trip_request(KvOp::Cas {
            key: key.clone(),
            expected: 12,
            value,
        });
        round_trip_request(KvOp::Scan {
            start: key,
            limit: MAX_SCAN_LIMIT,
        });
    }
}

#[test]
fn one_byte_over_a_limit_is_too_large_not_allocated() {
    let key = vec![1; limits().max_key + 1];
    let bytes = encoded_request(9, KvOp::Get { key });
    assert_eq!(
        KvRequest::decode(&bytes[4..], &limits()),
        Err(KvError::KeyTooLarge(limits().max_key + 1))
    );
    let value = vec![1; limits().max_value + 1];
    let bytes = encoded_request(
        9,
        KvOp::Put {
            key: Vec::new(),
            value,
        },
    );
    assert_eq!(
        KvRequest::decode(&bytes[4..], &limits()),
        Err(KvError::ValueTooLarge(limits().max_value + 1))
    );
    // The id survives, so the refusal can be answered.
    assert_eq!(KvRequest::peek_id(&bytes[4..]), Some((9, 2)));
}

#[test]
fn lengths_are_checked_before_reading() {
    let l = limits();
    assert_eq!(l.check_length(8u32.to_be_bytes()), Err(KvError::Short));
    assert_eq!(l.check_length(9u32.to_be_bytes()), Ok(9));
    let max = l.max_request() as u32;
    assert_eq!(l.check_length(max.to_be_bytes()), Ok(max as usize));
    assert_eq!(
        l.check_length((max + 1).to_be_bytes()),
        Err(KvError::TooLong(max as usize + 1))
    );
    assert_eq!(
        l.check_length(u32::MAX.to_be_bytes()),
        Err(KvError::TooLong(u32::MAX as usize))
    );
}

#[test]
fn malformed_requests_are_refused() {
    let l = limits();
    // Unknown op.
    assert_eq!(
        KvRequest::decode(&hex("00 00 00 00 00 00 00 01 08"), &l),
        Err(KvError::UnknownOp(8))
    );
    // A key length beyond the frame.
    assert_eq!(
        KvRequest::decode(&hex("00 00 00 00 00 00 00 01 01 00 05 61"), &l),
        Err(KvError::BadBody("get"))
    );
    // Trailing bytes after a whole body.
    assert_eq!(
        KvRequest::decode(&hex("00 00 00 00 00 00 00 01 01 00 00 ff"), &l),
        Err(KvError::BadBody("get"))
    );
    // Scan limits 0 and one over the bound.
    for limit in [0, MAX_SCAN_LIMIT + 1] {
        let mut bytes = hex("00 00 00 00 00 00 00 01 07 00 00");
        bytes.extend_from_slice(&limit.to_be_bytes());
        assert_eq!(KvRequest::decode(&bytes, &l), Err(KvError::BadLimit(limit)));
    }
}

#[test]
fn a_scan_answer_cannot_claim_more_items_than_its_bytes_hold() {
    let l = limits();
    let bytes = hex("00 00 00 00 00 00 00 04 07 00 00 00 03 e8 00");
    assert_eq!(
        KvResponse::decode(&bytes, &l),
        Err(KvError::BadBody("scan"))
    );
}

#[test]
fn every_status_round_trips() {
    use KvStatus::*;
    for (op, status, body) in [
        (2, Ok, KvBody::Version(3)),
        (3, Exists, KvBody::Version(3)),
        (6, VersionMismatch, KvBody::Version(NO_VERSION)),
        (4, NotFound, KvBody::Empty),
        (2, TooLarge, KvBody::Empty),
        (2, NotPrimary, KvBody::Text(b"127.0.0.1:7000".to_vec())),
        (2, Busy, KvBody::Empty),
        (2, NoMemory, KvBody::Empty),
        (2, Unavailable, KvBody::Empty),
        (99, BadRequest, KvBody::Text(b"unknown v2 op 99".to_vec())),
    ] {
        let response = KvResponse {
            id: u64::MAX,
            op,
            status,
            body,
        };
        let bytes = encoded_response(&response);
        assert_eq!(
            KvResponse::decode(&bytes[4..], &limits()),
            Result::Ok(response)
        );
    }
}
