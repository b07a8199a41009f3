//! A server connection fed raw bytes: the handshake (`wire::Tag::decode`),
//! then, for a `CLIENT` tag, the session logic the server runs
//! (`protocol::session`), with the input cut where the first byte says.
//! Checks the bookkeeping: every byte is taken or the session has ended,
//! and a final action stays final.
#![no_main]

use factory::protocol::session::{
    custom_reply, read_reply, write_reply, Action, ClientSession, CustomStatus, REQUEST_LEN,
};
use factory::wire::{Tag, HANDSHAKE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let Some(raw) = rest.get(..HANDSHAKE_LEN) else {
        return;
    };
    if Tag::decode(&raw.try_into().unwrap()) != Some(Tag::Client) {
        return; // the server closes any other connection here or elsewhere
    }
    let input = &rest[HANDSHAKE_LEN..];
    let piece = usize::from(cut).max(1);
    let mut session = ClientSession::new();
    for chunk in input.chunks(piece) {
        let mut chunk = chunk;
        for _ in 0..=chunk.len() {
            let (used, action) = session.receive(chunk);
            chunk = &chunk[used..];
            match action {
                Action::NeedInput => {
                    assert!(chunk.is_empty());
                    break;
                }
                Action::Write {
                    customer_id,
                    order_number,
                } => {
                    let _ = write_reply(customer_id, order_number, 0);
                }
                Action::Read { customer_id } => {
                    let _ = read_reply(customer_id, -1);
                }
                Action::Custom {
                    customer_id,
                    order_number,
                } => {
                    let _ = custom_reply(customer_id, order_number, 0, CustomStatus::Busy);
                }
                Action::End | Action::Close(_) => {
                    assert_eq!(session.receive(chunk), (0, action));
                    return;
                }
            }
        }
        assert!(session.partial() < REQUEST_LEN);
    }
});
