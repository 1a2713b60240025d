//! The dashboard over HTTP as a browser uses it (cookies, forms, redirects): [`flow`], the
//! first run and the everyday flow; [`review`], four-eyes in the dashboard. The browser tests
//! (tests/python/test_dashboard_browser.py) drive the same pages in Chromium.

mod editing;
mod flow;
mod own_flags;
mod project_pages;
mod proposals;
mod review;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};

use flaglog_tests::Server;

/// A browser: keeps cookies, follows redirects.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    jar: Arc<Jar>,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub html: String,
}

impl Browser {
    /// A browser signed in to `server` as `email` with `password` (on the home page).
    pub async fn signed_in(server: &Server, email: &str, password: &str) -> Browser {
        let browser = Browser::new(server);
        let form = browser.get("/login").await.expect(200, "/login");
        browser
            .post(
                "/login",
                &[
                    ("csrf", &form.csrf()),
                    ("email", email),
                    ("password", password),
                ],
            )
            .await
            .expect(200, "/");
        browser
    }

    pub fn new(server: &Server) -> Browser {
        let jar = Arc::new(Jar::default());
        Browser {
            base: server.base.clone(),
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jar,
        }
    }

    /// The value of the cookie `name` the browser holds for the server.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self.jar.cookies(&self.base.parse().unwrap())?;
        cookies
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        Page::of(response).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, None).await
    }

    pub async fn post_with(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        Page::of(request.send().await.unwrap()).await
    }
}

impl Page {
    async fn of(response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let url = response.url().path().to_string();
        let html = response.text().await.unwrap();
        assert!(status < 500, "{status} at {url}: {html}");
        Page { status, url, html }
    }

    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.html.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.html[start..].find('"').unwrap();
        self.html[start..start + end].to_string()
    }

    pub fn expect(self, status: u16, path: &str) -> Page {
        assert_eq!(
            (self.status, self.url.as_str()),
            (status, path),
            "{}",
            self.html
        );
        self
    }
}

pub async fn last_actor(server: &Server) -> (usize, String) {
    let events = server.events().await;
    let actor = events
        .last()
        .map(|e| e.metadata.actor.clone())
        .unwrap_or_default();
    (events.len(), actor)
}

/// Polls until `check` holds for what an SDK is served (`identifier` with `traits`, or the
/// environment's flags), and returns that answer; fails naming `what`.
pub async fn served(
    server: &Server,
    key: &str,
    identity: Option<(&str, Value)>,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let sdk = reqwest::Client::new();
    let mut last = Value::Null;
    for _ in 0..400 {
        let request = match &identity {
            Some((identifier, traits)) => sdk
                .post(format!("{}/api/v1/identities/", server.base))
                .json(&json!({"identifier": identifier, "traits": traits})),
            None => sdk.get(format!("{}/api/v1/flags/", server.base)),
        };
        let answer: Value = request
            .header("X-Environment-Key", key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let flags = answer.get("flags").cloned().unwrap_or(answer);
        if check(&flags) {
            return flags;
        }
        last = flags;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: the SDK was last served {last}")
}

/// The flag named `name` in an SDK answer.
pub fn flag<'a>(flags: &'a Value, name: &str) -> &'a Value {
    flags
        .as_array()
        .and_then(|all| all.iter().find(|f| f["feature"]["name"] == json!(name)))
        .unwrap_or(&Value::Null)
}

pub async fn environment_id(server: &Server, key: &str) -> u64 {
    server
        .get(&format!("/api/v1/environments/{key}/"))
        .send()
        .await
        .expect_status(200)
        .u64("id")
}

/// Posts `fields` (with the page's CSRF token) to `path`.
pub async fn submit(browser: &Browser, page: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.csrf();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post(path, &form).await
}
