//! Deterministic bucketing: the hashed percentage behind percentage-split segments and
//! multivariate allocation.
//!
//! Every Flagsmith engine and SDK computes the same number from the same ids, so an identity
//! lands in the same bucket whether its flags come from flaglog or from an SDK evaluating an
//! environment document locally. That agreement is the whole point: the formula (MD5 of the ids
//! joined by `,`, the digest as an integer modulo 9999, scaled to [0, 100)) is fixed by Flagsmith.

use md5::{Digest, Md5};

/// The hashed percentage of a list of ids (already in their string form), in `[0, 100)`.
///
/// The digest's value modulo 9999 is divided by 9998, so a remainder of 9998 would give exactly
/// 100; Flagsmith then hashes the ids repeated (`a,b,a,b`, then `a,b,a,b,a,b`, ...) until the
/// result is below 100, and so does this.
pub fn hashed_percentage(ids: &[&str]) -> f64 {
    if let Some(value) = single_block_percentage(ids) {
        return value;
    }
    let mut repetitions = 1;
    loop {
        let mut hasher = Md5::new();
        for round in 0..repetitions {
            for (i, id) in ids.iter().enumerate() {
                if round > 0 || i > 0 {
                    hasher.update(b",");
                }
                hasher.update(id.as_bytes());
            }
        }
        let digest: [u8; 16] = hasher.finalize().into();
        if let Some(value) = percentage_of(digest) {
            return value;
        }
        repetitions += 1;
    }
}

/// The digest as a percentage, or `None` when it is the top bucket (exactly 100).
fn percentage_of(digest: [u8; 16]) -> Option<f64> {
    let bucket = u128::from_be_bytes(digest) % 9999;
    // Both operands are small integers, so this division rounds exactly as Python's does.
    let value = (bucket as f64 / 9998.0) * 100.0;
    (value < 100.0).then_some(value)
}

/// The common case, hashed without the streaming hasher: ids whose joined text fits one MD5
/// block (at most 55 bytes, with room for the padding) and do not hash to the top bucket. The
/// block is padded by hand (`0x80`, zeros, the length in bits) and compressed once; `None`
/// leaves the rest to the general loop.
fn single_block_percentage(ids: &[&str]) -> Option<f64> {
    const INITIAL_STATE: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut block = [0u8; 64];
    let mut len = 0;
    for (i, id) in ids.iter().enumerate() {
        let bytes = id.as_bytes();
        let end = len + usize::from(i > 0) + bytes.len();
        if end > 55 {
            return None;
        }
        if i > 0 {
            block[len] = b',';
            len += 1;
        }
        block[len..end].copy_from_slice(bytes);
        len = end;
    }
    block[len] = 0x80;
    block[56..].copy_from_slice(&((len as u64) * 8).to_le_bytes());
    let mut state = INITIAL_STATE;
    md5::block_api::compress(&mut state, std::slice::from_ref(&block));
    let mut digest = [0u8; 16];
    for (chunk, word) in digest.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    percentage_of(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_flagsmith_reference_values() {
        // Values computed with Flagsmith's Python engine (flagsmith-flag-engine 11.1.1).
        let cases: &[(&[&str], f64)] = &[
            (&["12", "93"], 27.655531106221243),
            (&["381942", "test_env_foobar"], 44.78895779155831),
            (&["a"], 11.802360472094419),
            (&[], 35.40708141628326),
            (&["tamaño", "サイズ"], 97.06941388277656),
            // "seg,27259" hashes to the top bucket, so this one is the repeated-ids hash.
            (&["seg", "27259"], 58.38167633526705),
        ];
        for (ids, expected) in cases {
            assert_eq!(hashed_percentage(ids), *expected, "{ids:?}");
        }
    }

    #[test]
    fn a_remainder_of_9998_rehashes_with_repeated_ids() {
        // Brute-force an id pair whose first hash is exactly 100, then check the repeat rule.
        let found = (0..200_000u32).find_map(|i| {
            let id = i.to_string();
            let digest: [u8; 16] = Md5::digest(format!("seg,{id}").as_bytes()).into();
            (u128::from_be_bytes(digest) % 9999 == 9998).then_some(id)
        });
        let id = found.expect("some id hashes to the top bucket");
        let digest: [u8; 16] = Md5::digest(format!("seg,{id},seg,{id}").as_bytes()).into();
        let second = (u128::from_be_bytes(digest) % 9999) as f64 / 9998.0 * 100.0;
        assert!(
            second < 100.0,
            "the doubled ids happen to hit the top bucket too"
        );
        assert_eq!(hashed_percentage(&["seg", &id]), second);
    }

    proptest! {
        #[test]
        fn always_in_range(ids in proptest::collection::vec(".*", 0..4)) {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let value = hashed_percentage(&refs);
            prop_assert!((0.0..100.0).contains(&value), "{value}");
        }

        #[test]
        fn one_block_hashing_is_md5(ids in proptest::collection::vec("[a-z0-9_,-]{0,30}", 0..4)) {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            if let Some(fast) = single_block_percentage(&refs) {
                let digest: [u8; 16] = Md5::digest(refs.join(",").as_bytes()).into();
                prop_assert_eq!(Some(fast), percentage_of(digest));
            }
        }

        #[test]
        fn deterministic(a in ".*", b in ".*") {
            prop_assert_eq!(hashed_percentage(&[&a, &b]), hashed_percentage(&[&a, &b]));
        }
    }
}
