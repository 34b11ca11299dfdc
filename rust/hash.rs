//! XXH3-128 digests, one-shot and incremental. Pure Rust: no Python types here.

use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

/// Writes shorter than this are gathered in a local buffer before reaching the streaming state:
/// a canonical encoding is mostly a few bytes at a time, and one-shot XXH3 over a small buffer
/// is several times faster than feeding the streaming state piecemeal.
const DIRECT_WRITE_MIN: usize = 4096;

/// Upper bound of the gathering buffer, so hashing a huge value never holds a second copy of it.
const GATHER_MAX: usize = 64 * 1024;

/// One-shot XXH3-128 of `data`.
#[must_use]
pub fn digest(data: &[u8]) -> u128 {
    xxh3_128(data)
}

/// The canonical 32-digit lowercase hex form of a digest: the same text that `xxhash` from `PyPI` prints
/// for `xxh3_128_hexdigest` (xxhash-rust returns `high << 64 | low`, i.e. big-endian order).
#[must_use]
pub fn hex(digest: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0_u8; 32];
    for (pair, byte) in text.chunks_exact_mut(2).zip(digest.to_be_bytes()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    // Only ASCII hex digits were written.
    text.iter().map(|&b| char::from(b)).collect()
}

/// An incremental XXH3-128 hasher whose digest depends only on the concatenation of what was
/// written, never on how the writes were split.
///
/// Small writes are gathered and hashed in one shot at the end when the total stays small; past
/// [`GATHER_MAX`] (or on a large write) everything moves to a streaming state, which gives the
/// same digest by XXH3's definition.
pub struct KeyHasher {
    gathered: Vec<u8>,
    stream: Option<Box<Xxh3Default>>,
}

/// Room gathered up front: a key's encoding is mostly well under this, and growing the buffer
/// write by write (8, 16, 32, ... bytes) costs more than hashing it.
const GATHER_START: usize = 256;

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    #[must_use]
    pub fn new() -> Self {
        Self {
            gathered: Vec::with_capacity(GATHER_START),
            stream: None,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        if data.len() >= DIRECT_WRITE_MIN || self.gathered.len() + data.len() > GATHER_MAX {
            let stream = self.stream.get_or_insert_with(Box::default);
            stream.update(&self.gathered);
            self.gathered.clear();
            stream.update(data);
        } else {
            self.gathered.extend_from_slice(data);
        }
    }

    /// The digest of everything written so far; writing may go on afterwards.
    pub fn finish(&mut self) -> u128 {
        match &mut self.stream {
            None => xxh3_128(&self.gathered),
            Some(stream) => {
                stream.update(&self.gathered);
                self.gathered.clear();
                stream.digest128()
            }
        }
    }

    /// Forgets everything written, keeping the allocation for reuse.
    pub fn reset(&mut self) {
        self.gathered.clear();
        self.stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // A cheap deterministic byte pattern that is not periodic over small windows.
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn known_vectors_match_the_reference_implementation() {
        assert_eq!(
            hex(digest(b"hello world")),
            "df8d09e93f874900a99b8775cc15b6c7"
        );
        assert_eq!(hex(digest(b"")), "99aa06d3014798d86001c324468d497f");
    }

    #[test]
    fn hex_is_32_lowercase_digits_with_leading_zeros() {
        assert_eq!(hex(1), "00000000000000000000000000000001");
        assert_eq!(hex(u128::MAX), "f".repeat(32));
    }

    #[test]
    fn incremental_digest_is_independent_of_write_boundaries() {
        let data = sample(300_000);
        let one_shot = digest(&data);
        for chunk in [1, 7, 255, 4095, 4096, 65_536, 100_000] {
            let mut hasher = KeyHasher::new();
            for piece in data.chunks(chunk) {
                hasher.write(piece);
            }
            assert_eq!(hasher.finish(), one_shot, "chunk size {chunk}");
        }
    }

    #[test]
    fn mixing_small_and_large_writes_keeps_their_order() {
        let data = sample(20_000);
        let mut hasher = KeyHasher::new();
        hasher.write(&data[..10]);
        hasher.write(&data[10..15_000]);
        hasher.write(&data[15_000..15_003]);
        hasher.write(&data[15_003..]);
        assert_eq!(hasher.finish(), digest(&data));
    }

    #[test]
    fn writing_may_continue_after_finish_and_reset_starts_over() {
        let data = sample(10_000);
        let mut hasher = KeyHasher::new();
        hasher.write(&data[..5000]);
        assert_eq!(hasher.finish(), digest(&data[..5000]));
        assert_eq!(hasher.finish(), digest(&data[..5000]));
        hasher.write(&data[5000..]);
        assert_eq!(hasher.finish(), digest(&data));
        hasher.reset();
        hasher.write(b"hello world");
        assert_eq!(hasher.finish(), digest(b"hello world"));
    }
}
