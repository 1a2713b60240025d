//! People for the tests of roles and review: users made through the API, each with their own
//! token, and their roles on a project.

use serde_json::json;

use crate::Server;

/// A user made through `POST /api/v1/users/`.
#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub token: String,
}

impl Server {
    /// Creates a user (as the first admin) with no role anywhere.
    pub async fn user(&self, email: &str) -> User {
        let made = self
            .post(
                "/api/v1/users/",
                json!({"email": email, "password": "a long secret"}),
            )
            .send()
            .await
            .expect_status(201);
        User {
            id: made.u64("id"),
            token: made.str("token").to_string(),
        }
    }

    /// Gives `user` `role` (`viewer`, `editor`, `approver`, `admin`) on `project`.
    pub async fn grant(&self, project: u64, user: &User, role: &str) {
        self.put(
            &format!("/api/v1/projects/{project}/roles/{}/", user.id),
            json!({"role": role}),
        )
        .send()
        .await
        .expect_status(200);
    }

    /// A further personal token of `user`, issued with one of theirs: the same person.
    pub async fn personal_token(&self, user: &User, name: &str) -> User {
        let issued = self
            .post("/api/v1/tokens/", json!({"name": name}))
            .token(&user.token)
            .send()
            .await
            .expect_status(201);
        assert_eq!(issued.body["user_id"], user.id, "{}", issued.text);
        User {
            id: user.id,
            token: issued.str("token").to_string(),
        }
    }

    /// A service token with `role` on `project` (issued by the first admin): its token id and
    /// secret.
    pub async fn service_token(&self, project: u64, name: &str, role: &str) -> (u64, String) {
        let issued = self
            .post(
                &format!("/api/v1/projects/{project}/service-tokens/"),
                json!({"name": name, "role": role}),
            )
            .send()
            .await
            .expect_status(201);
        (issued.u64("id"), issued.str("token").to_string())
    }

    /// A user with `role` on `project`.
    pub async fn member(&self, project: u64, email: &str, role: &str) -> User {
        let user = self.user(email).await;
        self.grant(project, &user, role).await;
        user
    }
}
