//! Upcasters that turn stored events of older schema versions into the
//! current shape, so old event streams stay loadable without rewriting them.

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

use crate::user::USER_REGISTERED_VERSION;

/// Every upcaster the event stores must be configured with.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(user_registered_v2())]
}

/// Upcasts `UserRegistered` v1.0 (`{"user_id","email","name"}`) to v2.0:
/// `name` becomes `display_name`, and `"time_zone": "UTC"` plus
/// `"role": "member"` are added (v1 users all were UTC members).
///
/// The upcaster function receives the INNER payload, i.e. the object of
/// fields without the `{"UserRegistered": …}` enum wrapper, because the
/// stores keep the wrapper out of the payload column. Fields already present
/// are left untouched, so a half-migrated payload is upcast safely.
pub fn user_registered_v2() -> SemanticVersionEventUpcaster {
    SemanticVersionEventUpcaster::new(
        "UserRegistered",
        USER_REGISTERED_VERSION,
        Box::new(upcast_user_registered_v1),
    )
}

fn upcast_user_registered_v1(payload: Value) -> Value {
    let Value::Object(mut fields) = payload else {
        // Not an object: nothing we can fix; deserialization will report it.
        return payload;
    };
    if let Some(name) = fields.remove("name") {
        fields.entry("display_name").or_insert(name);
    }
    fields
        .entry("time_zone")
        .or_insert_with(|| Value::from("UTC"));
    fields
        .entry("role")
        .or_insert_with(|| Value::from("member"));
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use cqrs_es::persist::SerializedEvent;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::{Role, UserEvent};

    fn serialized(version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            Uuid::from_u128(7).to_string(),
            1,
            "user".to_string(),
            "UserRegistered".to_string(),
            version.to_string(),
            payload,
            json!({}),
        )
    }

    fn upcast(event: SerializedEvent) -> SerializedEvent {
        let all = upcasters();
        let upcaster = all
            .iter()
            .find(|u| u.can_upcast(&event.event_type, &event.event_version));
        match upcaster {
            Some(upcaster) => upcaster.upcast(event),
            None => event,
        }
    }

    #[test]
    fn user_registered_v1_is_upcast_to_v2_with_utc_member_defaults() {
        let id = Uuid::from_u128(7);
        let old = serialized(
            "1.0",
            json!({"user_id": id, "email": "Old@Example.com", "name": "Old Timer"}),
        );
        let new = upcast(old);
        // cqrs-es writes the full semantic version; "2.0.0" == "2.0".
        assert_eq!(new.event_version, "2.0.0");
        assert!(upcasters()
            .iter()
            .all(|u| !u.can_upcast(&new.event_type, &new.event_version)));
        let event: UserEvent =
            serde_json::from_value(json!({ "UserRegistered": new.payload })).unwrap();
        assert_eq!(
            event,
            UserEvent::UserRegistered {
                user_id: id,
                email: "Old@Example.com".into(),
                display_name: "Old Timer".into(),
                time_zone: "UTC".into(),
                role: Role::Member,
            }
        );
    }

    #[test]
    fn user_registered_v2_is_not_upcast() {
        let payload = json!({
            "user_id": Uuid::from_u128(7),
            "email": "a@b.io",
            "display_name": "A",
            "time_zone": "Europe/Berlin",
            "role": "admin"
        });
        let all = upcasters();
        assert!(all.iter().all(|u| !u.can_upcast("UserRegistered", "2.0")));
        let event = serialized("2.0", payload.clone());
        assert_eq!(upcast(event.clone()), event);
        assert_eq!(
            serde_json::from_value::<UserEvent>(json!({ "UserRegistered": payload })).unwrap(),
            UserEvent::UserRegistered {
                user_id: Uuid::from_u128(7),
                email: "a@b.io".into(),
                display_name: "A".into(),
                time_zone: "Europe/Berlin".into(),
                role: Role::Admin,
            }
        );
    }

    #[test]
    fn other_user_events_are_not_upcast() {
        assert!(upcasters()
            .iter()
            .all(|u| !u.can_upcast("ProfileChanged", "1.0")));
    }

    #[test]
    fn upcasting_leaves_non_object_payloads_alone() {
        assert_eq!(upcast_user_registered_v1(json!("x")), json!("x"));
    }
}
