//! Byte mutations of a valid encoding: a byte flipped, the input cut, bytes
//! inserted (random ones, or the given characters decoders trip on). Shared
//! by the proptest runs of the decoders (crates/core/tests/decoders.rs) and
//! of bearer tokens (crates/platform/tests/jwt.rs).

use proptest::prelude::*;

#[derive(Debug, Clone)]
pub enum ByteMutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
}

impl ByteMutation {
    /// Applies the mutation; positions wrap around the input's length.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len().max(1);
        match self {
            ByteMutation::Flip(at, bits) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= bits;
                }
            }
            ByteMutation::Cut(at) => bytes.truncate(at % len),
            ByteMutation::Insert(at, more) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, more.iter().copied());
            }
        }
    }
}

/// Flips, cuts, random inserts and inserts of one of `tricky`.
pub fn byte_mutation(tricky: Vec<&'static [u8]>) -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(a, b)| ByteMutation::Flip(a, b)),
        any::<usize>().prop_map(ByteMutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(a, v)| ByteMutation::Insert(a, v)),
        (any::<usize>(), prop::sample::select(tricky))
            .prop_map(|(a, s)| ByteMutation::Insert(a, s.to_vec())),
    ]
}
