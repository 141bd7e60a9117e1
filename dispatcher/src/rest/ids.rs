//! Volley's ids as the UUIDs REST clients expect, and back, exactly.
//!
//! A Volley id is a `u64`; the course's clients expect lowercase hyphenated UUIDs. Each
//! id maps to one RFC 9562 version-8 UUID: six bytes `volley`, the version nibble, a byte
//! for what the id names (task or function), then the variant bits and the id itself.
//! Task 1 is `766f6c6c-6579-8001-8000-000000000001`. No table is kept: the UUID is the id.

use std::fmt::Write;

const PREFIX: &[u8; 6] = b"volley";
const VERSION_8: u8 = 0x80;
const VARIANT: u64 = 0b10 << 62;

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A task.
    Task = 1,
    /// A registered function.
    Function = 2,
}

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a UUID at all (a 422 for the client).
    #[error("'{0}' is not a UUID")]
    Malformed(String),
    /// A UUID, but no id of this kind this dispatcher gives (a 404).
    #[error("no {kind} has the id {uuid}")]
    Unknown {
        /// What was looked for.
        kind: &'static str,
        /// The UUID given.
        uuid: String,
    },
}

impl IdKind {
    fn noun(self) -> &'static str {
        match self {
            IdKind::Task => "task",
            IdKind::Function => "function",
        }
    }
}

/// The UUID of Volley id `id`. Ids stay below 2^62 (a dispatcher would need 146 years
/// at a billion tasks a second to pass it); the top bits are the variant's.
pub fn to_uuid(kind: IdKind, id: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(PREFIX);
    bytes[6] = VERSION_8;
    bytes[7] = kind as u8;
    bytes[8..].copy_from_slice(&(VARIANT | (id & !(0b11 << 62))).to_be_bytes());
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The Volley id a UUID names: hyphenated or 32 bare hex digits, any case.
pub fn from_uuid(kind: IdKind, text: &str) -> Result<u64, IdError> {
    let malformed = || IdError::Malformed(volley_proto::text::quote(&text.chars().take(64).collect::<String>()));
    let hex: String = match text.len() {
        36 => {
            let ok = text.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
            if !ok {
                return Err(malformed());
            }
            text.chars().filter(|c| *c != '-').collect()
        }
        32 if text.chars().all(|c| c.is_ascii_hexdigit()) => text.to_owned(),
        _ => return Err(malformed()),
    };
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
    }
    let low = u64::from_be_bytes(bytes[8..].try_into().unwrap_or_default());
    if &bytes[..6] != PREFIX || bytes[6] != VERSION_8 || bytes[7] != kind as u8 || low >> 62 != 0b10 {
        return Err(IdError::Unknown {
            kind: kind.noun(),
            uuid: text.to_ascii_lowercase(),
        });
    }
    Ok(low & !(0b11 << 62))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_exactly_through_lowercase_uuids() {
        for id in [1, 2, 255, 1 << 40, (1 << 62) - 1] {
            for kind in [IdKind::Task, IdKind::Function] {
                let uuid = to_uuid(kind, id);
                assert_eq!(uuid.len(), 36);
                assert_eq!(uuid, uuid.to_ascii_lowercase());
                assert_eq!(from_uuid(kind, &uuid), Ok(id), "{uuid}");
                assert_eq!(from_uuid(kind, &uuid.to_ascii_uppercase()), Ok(id));
                assert_eq!(from_uuid(kind, &uuid.replace('-', "")), Ok(id));
            }
        }
        assert_eq!(to_uuid(IdKind::Task, 1), "766f6c6c-6579-8001-8000-000000000001");
    }

    #[test]
    fn other_uuids_are_unknown_and_other_text_malformed() {
        let function = to_uuid(IdKind::Function, 7);
        assert!(matches!(
            from_uuid(IdKind::Task, &function),
            Err(IdError::Unknown { .. })
        ));
        let random = "3f2b8e1c-9d4a-4c6e-8b2f-1a2b3c4d5e6f";
        assert!(matches!(from_uuid(IdKind::Task, random), Err(IdError::Unknown { .. })));
        for bad in [
            "",
            "1",
            "not-a-uuid",
            "766f6c6c-6579-8001-8000-00000000000g",
            "766f6c6c+6579-8001-8000-000000000001",
            "é",
        ] {
            assert!(
                matches!(from_uuid(IdKind::Task, bad), Err(IdError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
