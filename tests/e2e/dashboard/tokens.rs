//! API tokens in the dashboard: a person issues a token (its secret shown once works on the
//! API), rotates it (the old secret stops working, the new one works) and revokes it.

use flaglog_tests::{Backend, Server, on_both_backends};

use super::{Browser, Page};

fn secret_of(page: &Page) -> String {
    let marker = "<code class=\"key\">";
    let start = page.html.find(marker).expect("a secret") + marker.len();
    let end = page.html[start..].find('<').unwrap();
    page.html[start..start + end].to_string()
}

/// The form action ending in `/{suffix}` in the row of the token named `name`.
fn action_for(page: &Page, name: &str, suffix: &str) -> String {
    let row = page
        .html
        .find(&format!("<td>{name}</td>"))
        .expect("the token's row");
    let end = row
        + page.html[row..]
            .find(&format!("/{suffix}\""))
            .expect("an action")
        + suffix.len()
        + 1;
    let start = page.html[..end].rfind("action=\"").unwrap() + "action=\"".len();
    page.html[start..end].to_string()
}

async fn works(server: &Server, secret: &str) -> u16 {
    server
        .get("/api/v1/projects/")
        .token(secret)
        .send()
        .await
        .status
}

async fn a_person_issues_rotates_and_revokes_a_token(backend: Backend) {
    let server = Server::start(backend).await;
    server.user("dev@example.com").await;
    let browser = Browser::signed_in(&server, "dev@example.com", "a long secret").await;
    let page = browser.get("/tokens").await.expect(200, "/tokens");
    let issued = browser
        .post("/tokens", &[("csrf", &page.csrf()), ("name", "laptop")])
        .await
        .expect(201, "/tokens");
    let first = secret_of(&issued);
    assert_eq!(works(&server, &first).await, 200);

    let page = browser.get("/tokens").await;
    assert!(page.html.contains("laptop"));
    assert!(
        !page.html.contains(&first),
        "a listed token shows no secret"
    );
    let rotate = action_for(&page, "laptop", "rotate");
    let rotated = browser.post(&rotate, &[("csrf", &page.csrf())]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.html);
    let second = secret_of(&rotated);
    assert_ne!(first, second);
    assert_eq!(
        works(&server, &first).await,
        401,
        "the old secret stops working"
    );
    assert_eq!(works(&server, &second).await, 200);

    let page = browser.get("/tokens").await;
    let revoke = action_for(&page, "laptop", "revoke");
    browser
        .post(&revoke, &[("csrf", &page.csrf())])
        .await
        .expect(200, "/tokens");
    assert_eq!(
        works(&server, &second).await,
        401,
        "a revoked token stops working"
    );
}

on_both_backends!(a_person_issues_rotates_and_revokes_a_token);
