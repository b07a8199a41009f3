//! The 8-byte handshake that opens every connection and names its role.

/// Length of every handshake tag.
pub const HANDSHAKE_LEN: usize = 8;

/// Sent by a client to open a client session.
pub const CLIENT_TAG: [u8; HANDSHAKE_LEN] = *b"CLIENT\0\0";

/// Sent by a primary to open a v1 replication stream to a backup.
pub const PFA_TAG: [u8; HANDSHAKE_LEN] = *b"PFA\0\0\0\0\0";

/// The role a connection takes from its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A client session (`CLIENT`).
    Client,
    /// A v1 replication stream from a primary (`PFA`).
    Pfa,
    /// A native replication connection between Rust servers (`FREP`).
    Native,
    /// A cluster status request (`FSTA`), answered with one report.
    Status,
}

impl Tag {
    /// The bytes this side sends for the role.
    pub fn bytes(self) -> [u8; HANDSHAKE_LEN] {
        match self {
            Tag::Client => CLIENT_TAG,
            Tag::Pfa => PFA_TAG,
            Tag::Native => super::native::NATIVE_TAG,
            Tag::Status => super::status::STATUS_TAG,
        }
    }

    /// Recognises a tag the way the original server does: the first 3 bytes
    /// for `PFA`, the first 6 for `CLIENT`. Matching by prefix keeps original
    /// peers (which may pad differently) working; `None` means "close".
    pub fn decode(buf: &[u8; HANDSHAKE_LEN]) -> Option<Tag> {
        if buf == &super::native::NATIVE_TAG {
            Some(Tag::Native)
        } else if buf == &super::status::STATUS_TAG {
            Some(Tag::Status)
        } else if buf.starts_with(b"PFA") {
            Some(Tag::Pfa)
        } else if buf.starts_with(b"CLIENT") {
            Some(Tag::Client)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;

    #[test]
    fn golden_tags() {
        assert_eq!(CLIENT_TAG.to_vec(), hex("43 4c 49 45 4e 54 00 00"));
        assert_eq!(PFA_TAG.to_vec(), hex("50 46 41 00 00 00 00 00"));
    }

    #[test]
    fn tags_round_trip() {
        for tag in [Tag::Client, Tag::Pfa, Tag::Native, Tag::Status] {
            assert_eq!(Tag::decode(&tag.bytes()), Some(tag));
        }
    }

    #[test]
    fn prefix_matching_follows_the_original() {
        assert_eq!(Tag::decode(b"PFAxxxxx"), Some(Tag::Pfa));
        assert_eq!(Tag::decode(b"CLIENTab"), Some(Tag::Client));
        assert_eq!(Tag::decode(b"CLIEN\0\0\0"), None);
        assert_eq!(Tag::decode(b"PF\0\0\0\0\0\0"), None);
        assert_eq!(Tag::decode(b"GET / HT"), None);
        assert_eq!(
            Tag::decode(b"FREP\0\0\0\x02"),
            None,
            "another native version"
        );
        assert_eq!(Tag::decode(&[0; 8]), None);
        assert_eq!(
            Tag::decode(b"FSTA\0\0\0\x02"),
            None,
            "another status version"
        );
    }
}
