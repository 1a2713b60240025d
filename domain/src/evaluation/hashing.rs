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
        let bucket = u128::from_be_bytes(digest) % 9999;
        // Both operands are small integers, so this division rounds exactly as Python's does.
        let value = (bucket as f64 / 9998.0) * 100.0;
        if value < 100.0 {
            return value;
        }
        repetitions += 1;
    }
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
        fn deterministic(a in ".*", b in ".*") {
            prop_assert_eq!(hashed_percentage(&[&a, &b]), hashed_percentage(&[&a, &b]));
        }
    }
}
