//! Who is using the dashboard, and the CSRF token of their forms.
//!
//! Signing in sets the `flaglog_session` cookie to a random secret; `dashboard_sessions` holds
//! only its SHA-256, with the user and an expiry ([`SESSION_LIFETIME`]). A signed-in visitor
//! acts as the same [`Principal`] an API token of theirs would (without a token id), and every
//! change goes through [`crate::http::admin::execute`]: the dashboard holds no rule of its own.
//!
//! CSRF: every form carries a token derived from a secret the browser holds in an HTTP-only,
//! `SameSite=Strict` cookie: the session's secret once signed in, before that a random
//! `flaglog_csrf` cookie (double submit), so that the sign-in and first-run forms are covered
//! too. A POST whose token does not match, or whose `Origin` is another site, is refused (403).
//! Cookies are `Secure` unless the dashboard is reached on a loopback name (a developer's
//! machine, the tests).

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use commands::secrets;
use cookie::{Cookie, SameSite};
use domain::directory::Principal;
use sqlx::AnyPool;

use super::PageError;
use crate::http::AppState;
use crate::http::extract::{Admin, RequestInfo};

pub const SESSION_COOKIE: &str = "flaglog_session";
pub const PRESESSION_COOKIE: &str = "flaglog_csrf";
/// How long a session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// A dashboard request's visitor: signed in or not, with what their forms' CSRF token is
/// derived from.
pub struct Visitor {
    /// The signed-in person, acting as the API's callers do.
    pub signed_in: Option<Admin>,
    /// The cookie secret the CSRF token is derived from (the session's, or the pre-session
    /// cookie's); `None` when the browser sent neither.
    csrf_seed: Option<String>,
    /// A pre-session cookie to set with the response (the browser had none).
    new_presession: Option<String>,
    secure: bool,
    /// The `Origin` the request came from, when it names another host than this one.
    foreign_origin: bool,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let secure = !is_loopback_host(&parts.headers);
        let foreign_origin = origin_is_foreign(&parts.headers);
        let session_secret = cookie_value(&parts.headers, SESSION_COOKIE);
        let mut signed_in = None;
        if let Some(secret) = &session_secret
            && let Some(user_id) = session_user(&state.read_models, secret).await?
            && let Some(principal) = state.commands.principal_for_user(user_id).await?
        {
            let request = RequestInfo::from_request_parts(parts, state).await?;
            signed_in = Some(Admin {
                metadata: request.metadata(&principal.actor()),
                principal,
            });
        }
        let (csrf_seed, new_presession) = match (&signed_in, session_secret) {
            (Some(_), Some(secret)) => (Some(secret), None),
            _ => match cookie_value(&parts.headers, PRESESSION_COOKIE) {
                Some(seed) => (Some(seed), None),
                None => {
                    let seed = secrets::new_session_secret();
                    (None, Some(seed))
                }
            },
        };
        Ok(Visitor {
            signed_in,
            csrf_seed,
            new_presession,
            secure,
            foreign_origin,
        })
    }
}

impl Visitor {
    /// The CSRF token this visitor's forms carry.
    pub fn csrf_token(&self) -> String {
        let seed = self
            .csrf_seed
            .as_deref()
            .or(self.new_presession.as_deref())
            .unwrap_or_default();
        csrf_of(seed)
    }

    /// Refuses (403) a form whose token is not this visitor's, or sent from another site.
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        let expected = self.csrf_seed.as_deref().map(csrf_of);
        let matches = expected.is_some_and(|expected| constant_time_eq(&expected, token));
        if !matches || self.foreign_origin {
            return Err(PageError::forbidden(
                "this form is not one this dashboard gave you (a missing or stale CSRF token): \
                 reload the page and try again",
            ));
        }
        Ok(())
    }

    /// The signed-in person, or a redirect to the sign-in page.
    pub fn require(&self) -> Result<&Admin, PageError> {
        self.signed_in.as_ref().ok_or(PageError::SignIn)
    }

    /// The signed-in person, taken out of the visitor (for the API's handlers, which take the
    /// caller by value), or a redirect to the sign-in page.
    pub fn take_caller(&mut self) -> Result<Admin, PageError> {
        self.signed_in.take().ok_or(PageError::SignIn)
    }

    /// Adds the cookies this visitor needs to `response` (a new pre-session cookie).
    pub fn finish(&self, mut response: Response) -> Response {
        if let Some(seed) = &self.new_presession {
            let cookie = self.cookie(PRESESSION_COOKIE, seed.clone(), None);
            append_cookie(&mut response, &cookie);
        }
        response
    }

    /// Starts a session for `principal`'s user: the row, and its cookie on `response`.
    pub async fn sign_in(
        &self,
        pool: &AnyPool,
        principal: &Principal,
        response: &mut Response,
    ) -> Result<(), PageError> {
        let user_id = principal
            .user_id()
            .ok_or_else(|| PageError::forbidden("only people sign in to the dashboard"))?;
        let secret = secrets::new_session_secret();
        let now = projections::now_micros();
        let expires = now + SESSION_LIFETIME.as_micros() as i64;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at_micros <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map_err(PageError::storage)?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (secret_hash, user_id, created_at_micros, \
             expires_at_micros) VALUES ($1, $2, $3, $4)",
        )
        .bind(secrets::sha256_hex(&secret))
        .bind(user_id as i64)
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await
        .map_err(PageError::storage)?;
        let cookie = self.cookie(SESSION_COOKIE, secret, Some(SESSION_LIFETIME));
        append_cookie(response, &cookie);
        Ok(())
    }

    /// Ends the session the request came with (its row, and its cookie).
    pub async fn sign_out(
        &self,
        pool: &AnyPool,
        headers: &HeaderMap,
        response: &mut Response,
    ) -> Result<(), PageError> {
        if let Some(secret) = cookie_value(headers, SESSION_COOKIE) {
            sqlx::query("DELETE FROM dashboard_sessions WHERE secret_hash = $1")
                .bind(secrets::sha256_hex(&secret))
                .execute(pool)
                .await
                .map_err(PageError::storage)?;
        }
        let cookie = self.cookie(SESSION_COOKIE, String::new(), Some(Duration::ZERO));
        append_cookie(response, &cookie);
        Ok(())
    }

    fn cookie(
        &self,
        name: &'static str,
        value: String,
        max_age: Option<Duration>,
    ) -> Cookie<'static> {
        let mut cookie = Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure);
        if let Some(max_age) = max_age {
            cookie = cookie.max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64));
        }
        cookie.build()
    }
}

/// The user of the unexpired session whose secret this is.
async fn session_user(pool: &AnyPool, secret: &str) -> Result<Option<u64>, PageError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT user_id FROM dashboard_sessions WHERE secret_hash = $1 AND expires_at_micros > $2",
    )
    .bind(secrets::sha256_hex(secret))
    .bind(projections::now_micros())
    .fetch_optional(pool)
    .await
    .map_err(PageError::storage)?;
    Ok(row.map(|(id,)| id as u64))
}

fn csrf_of(seed: &str) -> String {
    secrets::sha256_hex(&format!("flaglog-dashboard-csrf\0{seed}"))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

fn append_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

fn host_name(host: &str) -> &str {
    // "[::1]:8000" → "[::1]", "localhost:8000" → "localhost".
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

fn is_loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = host_name(host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request's `Origin` names a host other than the one it was sent to (browsers send
/// `Origin` with every cross-site POST).
fn origin_is_foreign(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    origin_host != host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn cookies_are_found_by_name_among_several() {
        let h = headers(&[("cookie", "a=1; flaglog_session=s3cret; b=2")]);
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("s3cret"));
        assert_eq!(cookie_value(&h, PRESESSION_COOKIE), None);
    }

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for host in ["localhost:8000", "127.0.0.1:3000", "[::1]:80", "127.0.0.1"] {
            assert!(is_loopback_host(&headers(&[("host", host)])), "{host}");
        }
        for host in ["flags.example.com", "10.0.0.1:80", "localhost.example.com"] {
            assert!(!is_loopback_host(&headers(&[("host", host)])), "{host}");
        }
    }

    #[test]
    fn an_origin_other_than_the_host_is_foreign() {
        let same = headers(&[
            ("host", "127.0.0.1:8000"),
            ("origin", "http://127.0.0.1:8000"),
        ]);
        assert!(!origin_is_foreign(&same));
        let other = headers(&[
            ("host", "127.0.0.1:8000"),
            ("origin", "https://evil.example"),
        ]);
        assert!(origin_is_foreign(&other));
        assert!(!origin_is_foreign(&headers(&[("host", "a")])));
    }

    #[test]
    fn csrf_tokens_differ_per_seed_and_compare_exactly() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert!(constant_time_eq(&csrf_of("a"), &csrf_of("a")));
        assert!(!constant_time_eq(&csrf_of("a"), ""));
    }
}
