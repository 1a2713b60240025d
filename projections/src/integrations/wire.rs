//! The bytes of a webhook and their signatures. Flagsmith writes its webhook bodies with
//! Python's `json.dumps(payload, sort_keys=True)`: keys sorted, `", "` and `": "` between items,
//! anything beyond ASCII as `\uXXXX`; receivers verify `X-Flagsmith-Signature` (hex HMAC-SHA256 of
//! the body with the secret) over those bytes, so flaglog writes them the same way. The Standard
//! Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) sign the id, the
//! time and the body together, so a receiver can refuse a replayed request.

use std::io;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{Formatter, Serializer};
use sha2::Sha256;

/// `value` as Python's `json.dumps(value, sort_keys=True)` writes it (serde_json's maps are
/// sorted by key already).
pub fn python_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a `Value` into a Vec cannot fail.
    let _ = value.serialize(&mut serializer);
    out
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `X-Flagsmith-Signature`: the hex HMAC-SHA256 of the body, keyed with the secret's bytes.
pub fn flagsmith_signature(secret: &str, body: &[u8]) -> String {
    hex(&hmac_sha256(secret.as_bytes(), &[body]))
}

/// `webhook-signature` of Standard Webhooks: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`. A secret written `whsec_<base64>` is that key's bytes; any other
/// secret is used as its UTF-8 bytes.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let signed = hmac_sha256(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", STANDARD.encode(signed))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Flagsmith's documented test vector (integrations.md, 2.1).
    #[test]
    fn the_flagsmith_signature_matches_its_test_vector() {
        let body = python_json(&json!({
            "data": {"changed_by": "user@domain.com", "new_state": null,
                     "timestamp": "2021-06-18T07:50:26.595298Z"},
            "event_type": "FLAG_UPDATED"
        }));
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"data": {"changed_by": "user@domain.com", "new_state": null, "timestamp": "2021-06-18T07:50:26.595298Z"}, "event_type": "FLAG_UPDATED"}"#
        );
        assert_eq!(
            flagsmith_signature("my shared secret", &body),
            "58a34453ffb8c37b0bfb5e674accd176d9592e2832b0d6ac6107fa3f9e307046"
        );
    }

    #[test]
    fn non_ascii_is_escaped_as_python_does() {
        let body = python_json(&json!({"b": ["é", "😀"], "a": 1.5}));
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"a": 1.5, "b": ["\u00e9", "\ud83d\ude00"]}"#
        );
    }

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_standard_signature_matches_the_specification_example() {
        let signature = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
