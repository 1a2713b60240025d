//! The benchmark's client side: HTTP requests to the in-process server, the paged and exported
//! reads it times, and this process's resident memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Res;

/// The resident memory of this process (VmRSS), in KiB.
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("an instant formats as RFC 3339")
}

/// The HTTP side: the in-process server's address and a client.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
}

impl Http {
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Res<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", format!("Token {token}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}").into());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Res<Value> {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Res<Value> {
        self.send(reqwest::Method::GET, path, token, None).await
    }
}

/// Cursors of pages deep in the history (between 1 % and 10 % of the log from its start),
/// as a client gets them: the `next` of a page of rows recorded before a given instant.
pub(crate) async fn deep_cursors(
    http: &Http,
    token: &str,
    marks: &[(time::OffsetDateTime, u64)],
) -> Res<Vec<String>> {
    let head = marks.last().map_or(0, |m| m.1);
    let mut cursors = BTreeMap::new();
    for share in 1..=10 {
        let Some((at, _)) = marks.iter().find(|m| m.1 >= head * share / 100) else {
            continue;
        };
        let page = http
            .get(
                &format!("/api/v1/audit-log/?to={}&limit=50", rfc3339(*at)),
                token,
            )
            .await?;
        if let Some(next) = page["next"].as_str() {
            cursors.insert(share, next.to_string());
        }
    }
    if cursors.is_empty() {
        return Err("no page deep in the history has a next page".into());
    }
    Ok(cursors.into_values().collect())
}

/// Streams an export of the whole log: rows, bytes, seconds, and VmRSS (KiB) at the start, at
/// its peak while streaming, and at the end.
pub(crate) async fn export(
    http: &Http,
    token: &str,
    format: &str,
) -> Res<(u64, u64, f64, (u64, u64, u64))> {
    let sampling = Arc::new(AtomicBool::new(true));
    let start = rss_kib();
    let peak = Arc::new(AtomicU64::new(start));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let mut response = http
        .client
        .get(format!(
            "{}/api/v1/audit-log/export?format={format}",
            http.base
        ))
        .header("Authorization", format!("Token {token}"))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("export {format}: {}", response.status()).into());
    }
    let (mut lines, mut bytes) = (0_u64, 0_u64);
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().map_err(|_| "the memory sampler panicked")?;
    let end = rss_kib();
    let peak = peak.load(Ordering::Relaxed).max(end);
    // A CSV export starts with its header line.
    let rows = if format == "csv" {
        lines.saturating_sub(1)
    } else {
        lines
    };
    Ok((rows, bytes, seconds, (start, peak, end)))
}
