//! Operator actions run outside HTTP (the `meetings users …` CLI), through the same executor
//! so they are ordinary, audited events.

use std::sync::Arc;

use domain::{normalize_email, Actor, Role, User, UserCommand};
use platform::http::RequestId;
use platform::store::{EventStore, SideEffect};
use uuid::Uuid;

use crate::executor::{CommandMeta, CommandRequest, Executor};

/// Makes the registered user with this email an admin. Returns their id.
/// The event's actor is the operator (nil UUID); the request id starts with `cli-`.
pub async fn promote(store: Arc<dyn EventStore>, email: &str) -> anyhow::Result<Uuid> {
    set_role(store, email, Role::Admin).await
}

pub async fn set_role(store: Arc<dyn EventStore>, email: &str, role: Role) -> anyhow::Result<Uuid> {
    let account = store
        .account_by_email(&normalize_email(email))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no registered user has the email {email}"))?;
    let executor = Executor::new(store, Arc::new(domain::upcasters::upcasters()));
    let meta = CommandMeta {
        request_id: RequestId::new(format!("cli-{}", Uuid::now_v7()), None),
        if_match: None,
        idempotency_key: None,
    };
    let operator = Actor::operator();
    let request = CommandRequest::new(
        account.user_id,
        Some(operator.user_id),
        &meta,
        ("cli:users:set-role", serde_json::Value::Null),
        vec![UserCommand::ChangeRole {
            actor: operator,
            role,
        }],
    )
    // Tokens carrying the old role stop working everywhere, as for a change over HTTP.
    .with(SideEffect::RevokeAccess {
        user_id: account.user_id,
    });
    let response = executor
        .execute::<User>(&(), request)
        .await
        .map_err(|e| anyhow::anyhow!("cannot change the role: {e}"))?;
    debug_assert!(response.status().is_success());
    Ok(account.user_id)
}
