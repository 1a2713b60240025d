//! The dashboard over HTTP as a browser uses it (cookies, forms, redirects): the first run
//! creates the administrator and signs them in; the everyday flow (organisation, project,
//! environment, feature, toggle) reaches the SDK endpoint and the log under the person's name;
//! signing out ends the session for good; forms without the CSRF token, from another site, or
//! from a viewer are refused (403) and append nothing. (The browser tests drive the same pages
//! in Chromium.)

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{Browser, last_actor, served};

async fn the_first_run_creates_the_admin_and_the_everyday_flow_reaches_the_sdk(backend: Backend) {
    let server = Server::start_without_user(backend).await;
    let browser = Browser::new(&server);
    // No user yet: the dashboard offers to create the first administrator.
    let setup = browser.get("/").await.expect(200, "/setup");
    assert!(setup.html.contains("Create the administrator"));
    // A form without the token is refused; a short password is explained.
    browser
        .post(
            "/setup",
            &[("email", "ada@example.com"), ("password", "long enough")],
        )
        .await
        .expect(403, "/setup");
    let short = browser
        .post(
            "/setup",
            &[
                ("csrf", &setup.csrf()),
                ("email", "ada@example.com"),
                ("password", "short"),
            ],
        )
        .await
        .expect(400, "/setup");
    assert!(
        short.html.contains("at least 8 characters"),
        "{}",
        short.html
    );
    let home = browser
        .post(
            "/setup",
            &[
                ("csrf", &short.csrf()),
                ("email", "ada@example.com"),
                ("password", "a long secret"),
            ],
        )
        .await
        .expect(200, "/");
    assert!(
        home.html.contains("ada@example.com"),
        "signed in: {}",
        home.html
    );
    // The first run is over.
    browser.get("/setup").await.expect(200, "/");

    let csrf = home.csrf();
    let home = browser
        .post("/organisations", &[("csrf", &csrf), ("name", "Acme")])
        .await
        .expect(200, "/");
    assert!(home.html.contains("Acme"));
    let organisation_path = {
        let marker = "action=\"/organisations/";
        let start = home.html.rfind(marker).unwrap() + "action=\"".len();
        let end = home.html[start..].find('"').unwrap();
        home.html[start..start + end].to_string()
    };
    let project = browser
        .post(&organisation_path, &[("csrf", &csrf), ("name", "Shop")])
        .await;
    assert_eq!(project.status, 200);
    let project_path = project.url.clone();
    assert!(project_path.starts_with("/projects/"), "{project_path}");
    browser
        .post(
            &format!("{project_path}/environments"),
            &[("csrf", &csrf), ("name", "Production")],
        )
        .await
        .expect(200, &project_path);
    let page = browser
        .post(
            &format!("{project_path}/features"),
            &[("csrf", &csrf), ("name", "checkout_v2")],
        )
        .await
        .expect(200, &project_path);
    assert!(page.html.contains("checkout_v2") && page.html.contains("Turn on"));
    // The SDK key is shown; the SDK serves the flag off.
    let key = {
        let marker = "<code class=\"key\">";
        let start = page.html.find(marker).unwrap() + marker.len();
        let end = page.html[start..].find('<').unwrap();
        page.html[start..start + end].to_string()
    };
    let toggle = {
        let marker = "action=\"/environments/";
        let start = page.html.find(marker).unwrap() + "action=\"".len();
        let end = page.html[start..].find('"').unwrap();
        page.html[start..start + end].to_string()
    };
    let page = browser
        .post(&toggle, &[("csrf", &csrf), ("enabled", "true")])
        .await
        .expect(200, &project_path);
    assert!(page.html.contains("Turn off"), "{}", page.html);
    let (_, actor) = last_actor(&server).await;
    assert_eq!(actor, "user:1", "the change is the signed-in person's");
    // The audit page shows it under the person's name; its filters and export are the API's.
    let audit = browser.get("/audit?q=checkout_v2&project=&feature=").await;
    assert_eq!(audit.status, 200, "{}", audit.html);
    let row = audit
        .html
        .split("<tr id=\"position-")
        .nth(1)
        .expect("a row");
    assert!(
        row.contains("ada@example.com") && row.contains("checkout_v2"),
        "{row}"
    );
    let none = browser.get("/audit?q=no+such+flag").await;
    assert!(none.html.contains("No change matches"), "{}", none.html);
    let csv = browser.get("/audit/export?format=csv&q=checkout_v2").await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.html.starts_with("position,") && csv.html.contains("checkout_v2"),
        "{}",
        csv.html
    );
    let verified = browser.get("/audit/verify").await;
    assert!(
        verified.html.contains("Intact: positions 1 to"),
        "{}",
        verified.html
    );
    let flags = served(&server, &key, None, "the toggled flag", |f| {
        f[0]["enabled"] == json!(true)
    })
    .await;
    assert_eq!(flags[0]["feature"]["name"], json!("checkout_v2"));

    // Signing out ends the session: its cookie no longer works, even sent again.
    let session_cookie = format!(
        "flaglog_session={}",
        browser.cookie("flaglog_session").expect("a session cookie")
    );
    browser
        .post("/logout", &[("csrf", &csrf)])
        .await
        .expect(200, "/login");
    browser.get("/").await.expect(200, "/login");
    let replayed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/", server.base))
        .header("cookie", session_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 303);
    assert_eq!(replayed.headers()["location"], "/login");
    // A wrong password is refused with a message; the right one signs in again.
    let form = browser.get("/login").await;
    let refused = browser
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", "ada@example.com"),
                ("password", "not the one"),
            ],
        )
        .await
        .expect(401, "/login");
    assert!(refused.html.contains("do not match"));
    browser
        .post(
            "/login",
            &[
                ("csrf", &refused.csrf()),
                ("email", "ADA@example.com"),
                ("password", "a long secret"),
            ],
        )
        .await
        .expect(200, "/");
}

async fn forms_without_the_token_from_elsewhere_or_from_a_viewer_are_refused(backend: Backend) {
    let mut server = Server::start_without_user(backend).await;
    let admin = server
        .post(
            "/api/v1/users/config/init/",
            json!({"email": "admin@example.com", "password": "admin secret"}),
        )
        .send()
        .await
        .expect_status(201);
    server.token = Some(admin.str("token").to_string());
    let project = server.project(json!({"name": "shop"})).await;
    server.environment(project, "shop-key").await;
    let feature = server.feature(project, json!({"name": "banner"})).await;
    let viewer = server
        .post(
            "/api/v1/users/",
            json!({"email": "vera@example.com", "password": "viewer secret"}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id");
    server
        .put(
            &format!("/api/v1/projects/{project}/roles/{viewer}/"),
            json!({"role": "viewer"}),
        )
        .send()
        .await
        .expect_status(200);
    let environment_id = server
        .get("/api/v1/environments/shop-key/")
        .send()
        .await
        .expect_status(200)
        .u64("id");
    let toggle = format!("/environments/{environment_id}/features/{feature}/enabled");

    // The viewer reads the project but gets no controls; a forged form is refused by role.
    let vera = Browser::signed_in(&server, "vera@example.com", "viewer secret").await;
    let page = vera
        .get(&format!("/projects/{project}"))
        .await
        .expect(200, &format!("/projects/{project}"));
    assert!(page.html.contains("banner"));
    assert!(
        !page.html.contains("Turn on"),
        "a viewer sees no edit control"
    );
    assert!(!page.html.contains("New feature"));
    let (before, _) = last_actor(&server).await;
    let refused = vera
        .post(&toggle, &[("csrf", &page.csrf()), ("enabled", "true")])
        .await
        .expect(403, &toggle);
    assert!(refused.html.contains("editor"), "{}", refused.html);

    // The admin's session: no token, a token of another session, or another site's origin.
    let admin = Browser::signed_in(&server, "admin@example.com", "admin secret").await;
    let page = admin.get(&format!("/projects/{project}")).await;
    assert!(page.html.contains("Turn on"));
    admin
        .post(&toggle, &[("enabled", "true")])
        .await
        .expect(403, &toggle);
    admin
        .post(
            &toggle,
            &[("csrf", &refused_token(&vera).await), ("enabled", "true")],
        )
        .await
        .expect(403, &toggle);
    admin
        .post_with(
            &toggle,
            &[("csrf", &page.csrf()), ("enabled", "true")],
            Some("https://evil.example"),
        )
        .await
        .expect(403, &toggle);
    // An unknown e-mail is refused as a wrong password is.
    let stranger = Browser::new(&server);
    let form = stranger.get("/login").await;
    stranger
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", "nobody@example.com"),
                ("password", "whatever it is"),
            ],
        )
        .await
        .expect(401, "/login");
    assert_eq!(last_actor(&server).await.0, before, "nothing was appended");
    // A form that does not parse is a page saying what is wrong (400), and appends nothing.
    let bad = admin
        .post(&toggle, &[("csrf", &page.csrf()), ("enabled", "maybe")])
        .await
        .expect(400, &toggle);
    assert!(bad.html.contains("enabled"), "{}", bad.html);
    assert_eq!(last_actor(&server).await.0, before);
    // The same form with the admin's own token goes through.
    admin
        .post(&toggle, &[("csrf", &page.csrf()), ("enabled", "true")])
        .await
        .expect(200, &format!("/projects/{project}"));
    assert_eq!(last_actor(&server).await.0, before + 1);
}

async fn refused_token(browser: &Browser) -> String {
    browser.get("/").await.csrf()
}

on_both_backends!(
    the_first_run_creates_the_admin_and_the_everyday_flow_reaches_the_sdk,
    forms_without_the_token_from_elsewhere_or_from_a_viewer_are_refused,
);
