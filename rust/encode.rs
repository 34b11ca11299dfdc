//! The canonical, type-tagged byte encoding that cache keys are hashed over. Pure Rust.
//!
//! Every value is written as a tag byte, then its length or count where it has one (u64,
//! little-endian), then its content. Tags keep values of different types apart even where Python
//! calls them equal (`1`, `1.0`, `True`), and length prefixes keep `("ab", "c")` apart from
//! `("a", "bc")`. Unordered collections (dict, set, frozenset) are written as the sorted digests
//! of their members, each member encoded on its own, so their order never matters and no Python
//! `hash()` is ever involved. The full specification is `docs/keys.md`; changing any byte written
//! here changes keys and must come with a new [`KEY_FORMAT_VERSION`] and golden file.

use crate::hash::KeyHasher;

/// Bumped whenever any encoding below changes, so that old and new keys never mix.
pub const KEY_FORMAT_VERSION: u8 = 2;

/// Written first into every key, so a key of this format can never equal a digest of other data.
const KEY_PREAMBLE: &[u8] = b"taskstash-key\0";

/// The tag byte that starts each encoded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    None = 0x01,
    False = 0x02,
    True = 0x03,
    Int = 0x04,
    Float = 0x05,
    Complex = 0x06,
    Str = 0x07,
    Bytes = 0x08,
    ByteArray = 0x09,
    /// A memoryview: its struct format, shape and the bytes in C order.
    Buffer = 0x0A,
    Tuple = 0x0B,
    List = 0x0C,
    Dict = 0x0D,
    Set = 0x0E,
    FrozenSet = 0x0F,
    /// Any other type: its qualified name, then the value it reduces to.
    Object = 0x10,
}

/// Starts a key: the preamble and the format version.
pub fn key_header(out: &mut KeyHasher) {
    out.write(KEY_PREAMBLE);
    out.write(&[KEY_FORMAT_VERSION]);
}

fn length(out: &mut KeyHasher, len: usize) {
    out.write(&(len as u64).to_le_bytes());
}

pub fn none(out: &mut KeyHasher) {
    out.write(&[Tag::None as u8]);
}

pub fn boolean(out: &mut KeyHasher, value: bool) {
    out.write(&[if value { Tag::True } else { Tag::False } as u8]);
}

/// An integer of any size as sign and magnitude: `[Int, sign, len, magnitude...]` where sign is
/// 0 for zero and positive numbers, 1 for negative ones, and the magnitude is little-endian with
/// no trailing zero bytes (zero has an empty magnitude). One value has exactly one encoding,
/// whichever of [`int_i64`] or [`int_magnitude`] wrote it.
pub fn int_magnitude(out: &mut KeyHasher, negative: bool, magnitude_le: &[u8]) {
    let significant = magnitude_le
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    let magnitude = &magnitude_le[..significant];
    out.write(&[Tag::Int as u8, u8::from(negative && !magnitude.is_empty())]);
    length(out, magnitude.len());
    out.write(magnitude);
}

/// The common case of [`int_magnitude`], written in a single call: lists of small integers are
/// frequent arguments.
pub fn int_i64(out: &mut KeyHasher, value: i64) {
    let magnitude = value.unsigned_abs();
    let significant = (u64::BITS - magnitude.leading_zeros()).div_ceil(8) as usize;
    let mut encoded = [0_u8; 18];
    encoded[0] = Tag::Int as u8;
    encoded[1] = u8::from(value < 0);
    encoded[2..10].copy_from_slice(&(significant as u64).to_le_bytes());
    encoded[10..10 + significant].copy_from_slice(&magnitude.to_le_bytes()[..significant]);
    out.write(&encoded[..10 + significant]);
}

/// The bits a float is written as: `-0.0` is written as `0.0` and every NaN as the one quiet NaN,
/// because each of those groups compares equal (or is indistinguishable) in ordinary use.
#[must_use]
pub fn canonical_float_bits(value: f64) -> u64 {
    if value.is_nan() {
        f64::NAN.to_bits()
    } else if value == 0.0 {
        0
    } else {
        value.to_bits()
    }
}

pub fn float(out: &mut KeyHasher, value: f64) {
    out.write(&[Tag::Float as u8]);
    out.write(&canonical_float_bits(value).to_le_bytes());
}

pub fn complex(out: &mut KeyHasher, real: f64, imag: f64) {
    out.write(&[Tag::Complex as u8]);
    out.write(&canonical_float_bits(real).to_le_bytes());
    out.write(&canonical_float_bits(imag).to_le_bytes());
}

pub fn text(out: &mut KeyHasher, utf8: &[u8]) {
    sized_header(out, Tag::Str, utf8.len());
    out.write(utf8);
}

/// The tag and length of a sized value (str, bytes, bytearray, a container's item count), for
/// callers that write the content themselves (large bytes are hashed with the interpreter
/// released, containers are written item by item).
pub fn sized_header(out: &mut KeyHasher, tag: Tag, len: usize) {
    out.write(&[tag as u8]);
    length(out, len);
}

/// The header of a buffer whose `byte_len` bytes follow in C order: struct format, item size and
/// shape, so that the same bytes viewed as other items or another shape give another key.
pub fn buffer_header(
    out: &mut KeyHasher,
    format: &[u8],
    item_size: usize,
    shape: &[usize],
    byte_len: usize,
) {
    out.write(&[Tag::Buffer as u8]);
    length(out, format.len());
    out.write(format);
    length(out, item_size);
    length(out, shape.len());
    for &dimension in shape {
        length(out, dimension);
    }
    length(out, byte_len);
}

/// The header of a value of any other type: its qualified type name; the value it reduces to
/// follows.
pub fn object_header(out: &mut KeyHasher, type_name: &str) {
    sized_header(out, Tag::Object, type_name.len());
    out.write(type_name.as_bytes());
}

/// An unordered collection from the digests of its members (for a dict, of each key and value
/// encoded one after the other). Sorting the digests makes the result independent of iteration
/// order.
pub fn unordered(out: &mut KeyHasher, tag: Tag, member_digests: &mut [u128]) {
    member_digests.sort_unstable();
    sized_header(out, tag, member_digests.len());
    for digest in member_digests.iter() {
        out.write(&digest.to_le_bytes());
    }
}

/// Writes the key of one task call, `hash_key(("task", identity, components), {})`, from
/// components already hashed: each `(label, key)` pair is a 2-tuple of strings in a list. The
/// call path uses it to key a call without building the tuple, list and pairs in Python.
pub fn task_call<'a>(
    out: &mut KeyHasher,
    identity: &str,
    components: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    key_header(out);
    sized_header(out, Tag::Tuple, 3);
    text(out, b"task");
    text(out, identity.as_bytes());
    sized_header(out, Tag::List, components.len());
    for (label, key) in components {
        sized_header(out, Tag::Tuple, 2);
        text(out, label.as_bytes());
        text(out, key.as_bytes());
    }
    unordered(out, Tag::Dict, &mut []); // no named values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(write: impl FnOnce(&mut KeyHasher)) -> u128 {
        let mut out = KeyHasher::new();
        write(&mut out);
        out.finish()
    }

    #[test]
    fn one_integer_has_one_encoding_whichever_path_wrote_it() {
        for value in [0_i64, 1, -1, 255, 256, -256, i64::MAX, i64::MIN] {
            let mut padded = value.unsigned_abs().to_le_bytes().to_vec();
            padded.extend_from_slice(&[0, 0, 0]);
            assert_eq!(
                key_of(|out| int_i64(out, value)),
                key_of(|out| int_magnitude(out, value < 0, &padded)),
                "{value}"
            );
        }
    }

    #[test]
    fn negative_zero_magnitude_is_zero() {
        assert_eq!(
            key_of(|out| int_magnitude(out, true, &[0, 0])),
            key_of(|out| int_i64(out, 0))
        );
    }

    #[test]
    fn integers_beyond_64_bits_differ_from_their_truncations() {
        let two_to_64 = [0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_ne!(
            key_of(|out| int_magnitude(out, false, &two_to_64)),
            key_of(|out| int_i64(out, 0))
        );
        assert_ne!(
            key_of(|out| int_magnitude(out, false, &two_to_64)),
            key_of(|out| int_magnitude(out, true, &two_to_64))
        );
    }

    #[test]
    fn signed_zero_and_nans_are_canonical() {
        assert_eq!(canonical_float_bits(-0.0), canonical_float_bits(0.0));
        let other_nan = f64::from_bits(0x7ff8_0000_0000_beef);
        assert!(other_nan.is_nan());
        assert_eq!(
            canonical_float_bits(other_nan),
            canonical_float_bits(-f64::NAN)
        );
        assert_ne!(canonical_float_bits(1.0), canonical_float_bits(-1.0));
        assert_ne!(
            canonical_float_bits(f64::INFINITY),
            canonical_float_bits(f64::NEG_INFINITY)
        );
    }

    #[test]
    fn type_tags_separate_values_python_calls_equal() {
        let keys = [
            key_of(|out| int_i64(out, 1)),
            key_of(|out| float(out, 1.0)),
            key_of(|out| boolean(out, true)),
            key_of(|out| text(out, b"1")),
            key_of(|out| {
                sized_header(out, Tag::Bytes, 1);
                out.write(b"1");
            }),
            key_of(|out| complex(out, 1.0, 0.0)),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn length_prefixes_keep_boundaries() {
        let ab_c = key_of(|out| {
            text(out, b"ab");
            text(out, b"c");
        });
        let a_bc = key_of(|out| {
            text(out, b"a");
            text(out, b"bc");
        });
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn unordered_collections_ignore_member_order() {
        let forward = key_of(|out| unordered(out, Tag::Set, &mut [3, 1, 2]));
        let backward = key_of(|out| unordered(out, Tag::Set, &mut [2, 1, 3]));
        let frozen = key_of(|out| unordered(out, Tag::FrozenSet, &mut [1, 2, 3]));
        assert_eq!(forward, backward);
        assert_ne!(forward, frozen);
    }

    #[test]
    fn buffer_shape_and_format_are_part_of_the_key() {
        let data = [0_u8; 8];
        let as_shape = |shape: &[usize], format: &[u8], item: usize| {
            key_of(|out| {
                buffer_header(out, format, item, shape, data.len());
                out.write(&data);
            })
        };
        assert_ne!(as_shape(&[8], b"B", 1), as_shape(&[2, 4], b"B", 1));
        assert_ne!(as_shape(&[2], b"i", 4), as_shape(&[2], b"f", 4));
    }

    #[test]
    fn the_header_carries_the_format_version() {
        let with_header = key_of(key_header);
        let mut expected = KEY_PREAMBLE.to_vec();
        expected.push(KEY_FORMAT_VERSION);
        assert_eq!(with_header, crate::hash::digest(&expected));
    }
}
