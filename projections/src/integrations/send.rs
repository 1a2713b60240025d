//! Sending one integration request: the HTTP client every integration uses, one POST and how
//! its answer reads (a failure says whether another attempt may succeed), and the wait before
//! that attempt. Shared by the change delivery ([`super::delivery`]) and the identity
//! analytics ([`super::analytics`]).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use super::network::{self, PrivateAddress, PrivateNetworks, PublicOnly};
use super::render::{Answer, Message, Secrets};
use crate::Error;

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How integrations send: a client with a timeout, no redirects followed (a receiver cannot
/// send flaglog's request, with its credentials, elsewhere) and flaglog's user agent, and which
/// addresses it may reach ([`super::network`]).
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    networks: PrivateNetworks,
}

impl Outbound {
    pub fn new(networks: PrivateNetworks) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("flaglog/", env!("CARGO_PKG_VERSION")));
        if networks == PrivateNetworks::Refused {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .map_err(|e| Error::Other(format!("the integrations' HTTP client: {e}")))?;
        Ok(Outbound { client, networks })
    }

    /// POSTs `message`; `Ok` when the receiver took it (its status, and its body where the
    /// receiver answers failures with 200). An address it may not reach is a failure that
    /// another attempt would not mend.
    pub async fn post(&self, message: &Message) -> Result<(), Failure> {
        if self.networks == PrivateNetworks::Refused
            && let Some(refused) = network::refused_host(&message.url)
        {
            return Err(Failure {
                error: refused,
                retry: false,
                retry_after: None,
            });
        }
        post(&self.client, message).await
    }
}

/// Why an attempt failed, and whether another may succeed.
pub struct Failure {
    pub error: String,
    pub retry: bool,
    pub retry_after: Option<Duration>,
}

async fn post(client: &reqwest::Client, message: &Message) -> Result<(), Failure> {
    let mut request = client.post(&message.url).body(message.body.clone());
    for (name, value) in &message.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| {
        let private = source_of::<PrivateAddress>(&e).map(ToString::to_string);
        Failure {
            retry: private.is_none(),
            error: match private {
                Some(private) => private,
                None if e.is_timeout() => "timed out".to_string(),
                None => format!("cannot reach the receiver: {}", e.without_url()),
            },
            retry_after: None,
        }
    })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Failure {
            error: format!("answered {status}: {}", excerpt(&body)),
            retry: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        });
    }
    let refused = match message.answer {
        Answer::Status => None,
        Answer::SlackOk => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool))
            .is_none_or(|ok| !ok)
            .then_some("without \"ok\""),
        Answer::One => (body.trim() != "1").then_some("without 1"),
    };
    match refused {
        None => Ok(()),
        Some(what) => Err(Failure {
            error: format!("answered {status} {what}: {}", excerpt(&body)),
            retry: false,
            retry_after: None,
        }),
    }
}

/// `error` with the integration's secret values (and the Basic credentials made of them) taken
/// out: a receiver's answer is quoted in errors, and one that echoes the request would
/// otherwise put a key in the status API and the log.
pub fn redact(error: String, secrets: &Secrets) -> String {
    use base64::Engine;
    let mut error = error;
    for secret in secrets.values().filter(|s| s.len() >= 4) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{secret}:"));
        for form in [secret.as_str(), basic.as_str()] {
            if error.contains(form) {
                error = error.replace(form, "[redacted]");
            }
        }
    }
    error
}

/// The error of type `T` in `error`'s chain of sources.
fn source_of<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}

fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

/// The wait before attempt `attempts + 1`: `initial` doubled per attempt up to `longest`, a
/// random half of it added or not ("equal jitter"), so receivers coming back are not hit by
/// every sender at once.
pub fn backoff(initial: Duration, longest: Duration, attempts: u64) -> Duration {
    let doubled = initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(longest);
    let half = doubled / 2;
    let random = std::collections::hash_map::RandomState::new().hash_one(attempts);
    let jitter = half.mul_f64((random % 1000) as f64 / 1000.0);
    half + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_takes_out_secrets_and_their_basic_credentials() {
        let secrets: Secrets = [
            ("api_key".to_string(), "seg-key-9".to_string()),
            ("short".to_string(), "k".to_string()),
        ]
        .into();
        let error =
            "answered 400: {\"authorization\": \"Basic c2VnLWtleS05Og==\", \"key\": \"seg-key-9\"}";
        assert_eq!(
            redact(error.to_string(), &secrets),
            "answered 400: {\"authorization\": \"Basic [redacted]\", \"key\": \"[redacted]\"}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_longest_with_jitter_below_it() {
        let initial = Duration::from_millis(100);
        let longest = Duration::from_secs(1);
        for attempts in 1..=10 {
            let wait = backoff(initial, longest, attempts);
            let full = (initial * 2u32.pow(attempts as u32 - 1)).min(longest);
            assert!(
                wait >= full / 2 && wait <= full,
                "{attempts}: {wait:?} of {full:?}"
            );
        }
    }
}
