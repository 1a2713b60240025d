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

    /// A user with `role` on `project`.
    pub async fn member(&self, project: u64, email: &str, role: &str) -> User {
        let user = self.user(email).await;
        self.grant(project, &user, role).await;
        user
    }
}
