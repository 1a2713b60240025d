//! Semantic versions as Flagsmith compares them (`:semver` conditions).
//!
//! Flagsmith uses Python's `semver` package: strict SemVer 2.0 parsing (`1.2` is not a version),
//! precedence by major, minor, patch, then pre-release identifiers, and build metadata ignored.
//! The `semver` crate orders build metadata too, so flaglog keeps its own small implementation
//! rather than diverge on `1.0.0+a` vs `1.0.0+b`.

use std::cmp::Ordering;

/// A parsed version. Numeric parts are kept as digit strings: SemVer does not bound them, and
/// comparing canonical digit strings (no leading zeros) by length then text is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    prerelease: Option<&'a str>,
    build: Option<&'a str>,
}

impl<'a> Version<'a> {
    /// Strict SemVer 2.0: `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`, no leading zeros in numeric
    /// parts or numeric pre-release identifiers, ASCII only.
    pub(crate) fn parse(text: &'a str) -> Option<Version<'a>> {
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        let (core, prerelease) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let mut parts = core.split('.');
        let major = parts.next().filter(|p| is_numeric_identifier(p))?;
        let minor = parts.next().filter(|p| is_numeric_identifier(p))?;
        let patch = parts.next().filter(|p| is_numeric_identifier(p))?;
        if parts.next().is_some() {
            return None;
        }
        if let Some(pre) = prerelease
            && !pre.split('.').all(is_prerelease_identifier)
        {
            return None;
        }
        if let Some(build) = build
            && !build.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            prerelease,
            build,
        })
    }

    /// SemVer precedence; build metadata does not take part.
    pub(crate) fn precedence(&self, other: &Version) -> Ordering {
        cmp_numeric(self.major, other.major)
            .then_with(|| cmp_numeric(self.minor, other.minor))
            .then_with(|| cmp_numeric(self.patch, other.patch))
            .then_with(|| match (self.prerelease, other.prerelease) {
                (None, None) => Ordering::Equal,
                // A pre-release comes before its release.
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) if a == b => Ordering::Equal,
                (Some(a), Some(b)) => cmp_prerelease(a, b),
            })
    }

    /// The parts Python's `in` finds when it iterates a `semver.Version`: the pre-release and
    /// build strings (the numeric parts are integers there, never equal to a string).
    pub(crate) fn has_string_part(&self, text: &str) -> bool {
        self.prerelease == Some(text) || self.build == Some(text)
    }
}

fn is_numeric_identifier(part: &str) -> bool {
    !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_digit())
        && (part == "0" || !part.starts_with('0'))
}

fn is_prerelease_identifier(id: &str) -> bool {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return false;
    }
    // Numeric identifiers must not have leading zeros; alphanumeric ones may.
    !id.bytes().all(|b| b.is_ascii_digit()) || is_numeric_identifier(id)
}

fn cmp_numeric(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let x_numeric = x.bytes().all(|c| c.is_ascii_digit());
                let y_numeric = y.bytes().all(|c| c.is_ascii_digit());
                let ordering = match (x_numeric, y_numeric) {
                    (true, true) => cmp_numeric(x, y),
                    // Numeric identifiers have lower precedence than alphanumeric ones.
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        let a = Version::parse(a).expect("valid a");
        let b = Version::parse(b).expect("valid b");
        a.precedence(&b)
    }

    #[test]
    fn parses_strictly() {
        for valid in [
            "1.2.3",
            "0.0.0",
            "1.2.3-pre.2+build.4",
            "1.0.0-0a.1",
            "1.0.0+001",
        ] {
            assert!(Version::parse(valid).is_some(), "{valid}");
        }
        for invalid in [
            "1.2", "01.2.3", "1.2.3-01", "1.2.3-", "1.2.3+", "v1.2.3", "1.2.3.4", "",
        ] {
            assert!(Version::parse(invalid).is_none(), "{invalid}");
        }
    }

    #[test]
    fn orders_by_semver_precedence() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(cmp(pair[0], pair[1]), Ordering::Less, "{pair:?}");
        }
        assert_eq!(cmp("1.0.0+a", "1.0.0+b"), Ordering::Equal);
    }
}
