//! Given/when/then tests of the `User` aggregate rules.

use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use uuid::Uuid;

use super::*;

type UserTest = TestFramework<User>;

const PASSWORD: &str = "correct horse";

fn user_id() -> Uuid {
    Uuid::from_u128(1)
}

fn me() -> Actor {
    Actor::new(user_id(), Role::Member)
}

fn stranger() -> Actor {
    Actor::new(Uuid::from_u128(2), Role::Member)
}

fn admin() -> Actor {
    Actor::new(Uuid::from_u128(3), Role::Admin)
}

fn register(email: &str, password: &str, name: &str, tz: Option<&str>) -> UserCommand {
    UserCommand::Register {
        user_id: user_id(),
        email: email.into(),
        password: password.into(),
        display_name: name.into(),
        time_zone: tz.map(Into::into),
    }
}

fn registered() -> UserEvent {
    UserEvent::UserRegistered {
        user_id: user_id(),
        email: "Alice@Example.com".into(),
        display_name: "Alice".into(),
        time_zone: "UTC".into(),
        role: Role::Member,
    }
}

fn deactivated() -> UserEvent {
    UserEvent::UserDeactivated { by: user_id() }
}

fn hours(days: Vec<Weekday>, start: &str, end: &str) -> WorkingHours {
    WorkingHours {
        days,
        start: start.into(),
        end: end.into(),
    }
}

fn profile(
    display_name: Option<&str>,
    time_zone: Option<&str>,
    working_hours: Option<Option<WorkingHours>>,
) -> UserCommand {
    UserCommand::ChangeProfile {
        actor: me(),
        display_name: display_name.map(Into::into),
        time_zone: time_zone.map(Into::into),
        working_hours,
    }
}

fn fields(error: DomainError) -> Vec<String> {
    match error {
        DomainError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn rejected_fields(given: Vec<UserEvent>, command: UserCommand) -> Vec<String> {
    fields(
        UserTest::with(())
            .given(given)
            .when(command)
            .inspect_result()
            .expect_err("command should be rejected"),
    )
}

// ---------------------------------------------------------------- Register

#[test]
fn register_records_a_member_with_trimmed_fields_and_utc_by_default() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register("  Alice@Example.com ", PASSWORD, "  Alice ", None))
        .then_expect_events(vec![registered()]);
}

#[test]
fn register_keeps_a_given_time_zone() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register("a@b.io", PASSWORD, "A", Some("Europe/Berlin")))
        .then_expect_events(vec![UserEvent::UserRegistered {
            user_id: user_id(),
            email: "a@b.io".into(),
            display_name: "A".into(),
            time_zone: "Europe/Berlin".into(),
            role: Role::Member,
        }]);
}

#[test]
fn register_rejects_an_existing_user() {
    UserTest::with(())
        .given(vec![registered()])
        .when(register("a@b.io", PASSWORD, "A", None))
        .then_expect_error(DomainError::conflict("user already exists"));
}

#[test]
fn register_rejects_malformed_emails() {
    for email in [
        "alice",
        "@example.com",
        "alice@example",
        "a@b@example.com",
        "al ice@example.com",
        "",
    ] {
        assert_eq!(
            rejected_fields(vec![], register(email, PASSWORD, "A", None)),
            vec!["email"],
            "{email:?}"
        );
    }
}

#[test]
fn register_accepts_a_254_char_email_and_rejects_255() {
    let local = "a".repeat(254 - "@example.com".len());
    UserTest::with(())
        .given_no_previous_events()
        .when(register(
            &format!("{local}@example.com"),
            PASSWORD,
            "A",
            None,
        ))
        .inspect_result()
        .expect("254 characters are allowed");
    assert_eq!(
        rejected_fields(
            vec![],
            register(&format!("{local}x@example.com"), PASSWORD, "A", None)
        ),
        vec!["email"]
    );
}

#[test]
fn register_accepts_8_and_128_char_passwords() {
    for len in [8, 128] {
        UserTest::with(())
            .given_no_previous_events()
            .when(register("a@b.io", &"p".repeat(len), "A", None))
            .inspect_result()
            .expect("password length is within bounds");
    }
}

#[test]
fn register_rejects_7_and_129_char_passwords() {
    for len in [7, 129] {
        assert_eq!(
            rejected_fields(vec![], register("a@b.io", &"p".repeat(len), "A", None)),
            vec!["password"],
            "{len}"
        );
    }
}

#[test]
fn register_rejects_blank_display_name() {
    assert_eq!(
        rejected_fields(vec![], register("a@b.io", PASSWORD, "   ", None)),
        vec!["display_name"]
    );
}

#[test]
fn register_accepts_100_char_display_name_and_rejects_101() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register("a@b.io", PASSWORD, &"n".repeat(100), None))
        .inspect_result()
        .expect("100 characters are allowed");
    assert_eq!(
        rejected_fields(vec![], register("a@b.io", PASSWORD, &"n".repeat(101), None)),
        vec!["display_name"]
    );
}

#[test]
fn register_rejects_unknown_time_zone() {
    assert_eq!(
        rejected_fields(vec![], register("a@b.io", PASSWORD, "A", Some("Mars/Base"))),
        vec!["time_zone"]
    );
}

#[test]
fn register_reports_every_bad_field_at_once() {
    assert_eq!(
        rejected_fields(vec![], register("nope", "short", "", Some("Nowhere"))),
        vec!["email", "password", "display_name", "time_zone"]
    );
}

#[test]
fn registered_event_never_contains_the_password() {
    let json = serde_json::to_string(&registered()).unwrap();
    assert!(!json.contains("password"));
    assert!(json.starts_with("{\"UserRegistered\":{"));
}

// ----------------------------------------------------------- ChangeProfile

#[test]
fn change_profile_records_the_full_new_profile() {
    let wh = hours(vec![Weekday::Mon, Weekday::Fri], "09:00", "17:30");
    UserTest::with(())
        .given(vec![registered()])
        .when(profile(
            Some(" Alice B "),
            Some("Europe/Paris"),
            Some(Some(wh.clone())),
        ))
        .then_expect_events(vec![UserEvent::ProfileChanged {
            display_name: "Alice B".into(),
            time_zone: "Europe/Paris".into(),
            working_hours: Some(wh),
        }]);
}

#[test]
fn change_profile_keeps_fields_that_are_not_given() {
    UserTest::with(())
        .given(vec![registered()])
        .when(profile(None, Some("Asia/Tokyo"), None))
        .then_expect_events(vec![UserEvent::ProfileChanged {
            display_name: "Alice".into(),
            time_zone: "Asia/Tokyo".into(),
            working_hours: None,
        }]);
}

#[test]
fn change_profile_clears_working_hours_with_some_none() {
    let wh = hours(vec![Weekday::Mon], "09:00", "17:00");
    UserTest::with(())
        .given(vec![
            registered(),
            UserEvent::ProfileChanged {
                display_name: "Alice".into(),
                time_zone: "UTC".into(),
                working_hours: Some(wh),
            },
        ])
        .when(profile(None, None, Some(None)))
        .then_expect_events(vec![UserEvent::ProfileChanged {
            display_name: "Alice".into(),
            time_zone: "UTC".into(),
            working_hours: None,
        }]);
}

#[test]
fn change_profile_without_changes_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(profile(Some("Alice"), Some("UTC"), Some(None)))
        .then_expect_events(vec![]);
    UserTest::with(())
        .given(vec![registered()])
        .when(profile(None, None, None))
        .then_expect_events(vec![]);
}

#[test]
fn change_profile_rejects_a_missing_user() {
    UserTest::with(())
        .given_no_previous_events()
        .when(profile(Some("A"), None, None))
        .then_expect_error(DomainError::not_found("user not found"));
}

#[test]
fn change_profile_rejects_another_user_even_an_admin() {
    for actor in [stranger(), admin()] {
        let result = UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangeProfile {
                actor,
                display_name: Some("X".into()),
                time_zone: None,
                working_hours: None,
            })
            .inspect_result();
        assert!(
            matches!(result, Err(DomainError::Forbidden(_))),
            "{actor:?}"
        );
    }
}

#[test]
fn change_profile_rejects_a_deactivated_user() {
    UserTest::with(())
        .given(vec![registered(), deactivated()])
        .when(profile(Some("A"), None, None))
        .then_expect_error(DomainError::conflict("user is deactivated"));
}

#[test]
fn change_profile_rejects_blank_and_101_char_display_names() {
    for name in ["  ".to_string(), "n".repeat(101)] {
        assert_eq!(
            rejected_fields(vec![registered()], profile(Some(&name), None, None)),
            vec!["display_name"]
        );
    }
}

#[test]
fn change_profile_rejects_unknown_time_zone() {
    assert_eq!(
        rejected_fields(vec![registered()], profile(None, Some("Moon/Crater"), None)),
        vec!["time_zone"]
    );
}

#[test]
fn change_profile_rejects_working_hours_without_days() {
    let wh = hours(vec![], "09:00", "17:00");
    assert_eq!(
        rejected_fields(vec![registered()], profile(None, None, Some(Some(wh)))),
        vec!["working_hours.days"]
    );
}

#[test]
fn change_profile_rejects_duplicate_working_days() {
    let wh = hours(
        vec![Weekday::Mon, Weekday::Tue, Weekday::Mon],
        "09:00",
        "17:00",
    );
    assert_eq!(
        rejected_fields(vec![registered()], profile(None, None, Some(Some(wh)))),
        vec!["working_hours.days[2]"]
    );
}

#[test]
fn change_profile_rejects_unparsable_working_times() {
    let wh = hours(vec![Weekday::Mon], "9am", "25:00");
    assert_eq!(
        rejected_fields(vec![registered()], profile(None, None, Some(Some(wh)))),
        vec!["working_hours.start", "working_hours.end"]
    );
}

#[test]
fn change_profile_rejects_working_hours_ending_before_or_at_start() {
    for (start, end) in [("17:00", "09:00"), ("09:00", "09:00")] {
        let wh = hours(vec![Weekday::Mon], start, end);
        assert_eq!(
            rejected_fields(vec![registered()], profile(None, None, Some(Some(wh)))),
            vec!["working_hours.end"]
        );
    }
}

#[test]
fn working_hours_reject_unknown_json_fields() {
    let json = r#"{"days":["mon"],"start":"09:00","end":"17:00","lunch":"12:00"}"#;
    assert!(serde_json::from_str::<WorkingHours>(json).is_err());
    let ok = r#"{"days":["mon","sun"],"start":"09:00","end":"17:00"}"#;
    assert_eq!(
        serde_json::from_str::<WorkingHours>(ok).unwrap().days,
        vec![Weekday::Mon, Weekday::Sun]
    );
}

// ---------------------------------------------------------- ChangePassword

#[test]
fn change_password_records_an_event_without_the_password() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangePassword {
            actor: me(),
            new_password: "n".repeat(128),
        })
        .then_expect_events(vec![UserEvent::PasswordChanged {}]);
}

#[test]
fn change_password_rejects_a_missing_user() {
    UserTest::with(())
        .given_no_previous_events()
        .when(UserCommand::ChangePassword {
            actor: me(),
            new_password: PASSWORD.into(),
        })
        .then_expect_error(DomainError::not_found("user not found"));
}

#[test]
fn change_password_rejects_another_user() {
    let result = UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangePassword {
            actor: admin(),
            new_password: PASSWORD.into(),
        })
        .inspect_result();
    assert!(matches!(result, Err(DomainError::Forbidden(_))));
}

#[test]
fn change_password_rejects_a_deactivated_user() {
    UserTest::with(())
        .given(vec![registered(), deactivated()])
        .when(UserCommand::ChangePassword {
            actor: me(),
            new_password: PASSWORD.into(),
        })
        .then_expect_error(DomainError::conflict("user is deactivated"));
}

#[test]
fn change_password_accepts_8_chars_and_rejects_7_and_129() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangePassword {
            actor: me(),
            new_password: "p".repeat(8),
        })
        .then_expect_events(vec![UserEvent::PasswordChanged {}]);
    for len in [7, 129] {
        assert_eq!(
            rejected_fields(
                vec![registered()],
                UserCommand::ChangePassword {
                    actor: me(),
                    new_password: "p".repeat(len),
                }
            ),
            vec!["new_password"]
        );
    }
}

// -------------------------------------------------------------- ChangeRole

#[test]
fn change_role_by_admin_records_the_new_role() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeRole {
            actor: admin(),
            role: Role::Admin,
        })
        .then_expect_events(vec![UserEvent::RoleChanged { role: Role::Admin }]);
}

#[test]
fn change_role_to_the_same_role_emits_nothing() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeRole {
            actor: Actor::operator(),
            role: Role::Member,
        })
        .then_expect_events(vec![]);
}

#[test]
fn change_role_rejects_a_missing_user() {
    UserTest::with(())
        .given_no_previous_events()
        .when(UserCommand::ChangeRole {
            actor: admin(),
            role: Role::Admin,
        })
        .then_expect_error(DomainError::not_found("user not found"));
}

#[test]
fn change_role_rejects_non_admins_including_the_user_themself() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::ChangeRole {
            actor: me(),
            role: Role::Admin,
        })
        .then_expect_error(DomainError::forbidden("only an admin can change roles"));
}

#[test]
fn change_role_rejects_a_deactivated_user() {
    UserTest::with(())
        .given(vec![registered(), deactivated()])
        .when(UserCommand::ChangeRole {
            actor: admin(),
            role: Role::Admin,
        })
        .then_expect_error(DomainError::conflict("user is deactivated"));
}

// -------------------------------------------------------------- Deactivate

#[test]
fn deactivate_by_the_user_records_who_did_it() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::Deactivate { actor: me() })
        .then_expect_events(vec![UserEvent::UserDeactivated { by: user_id() }]);
}

#[test]
fn deactivate_by_an_admin_records_the_admin() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::Deactivate { actor: admin() })
        .then_expect_events(vec![UserEvent::UserDeactivated {
            by: admin().user_id,
        }]);
}

#[test]
fn deactivate_rejects_a_missing_user() {
    UserTest::with(())
        .given_no_previous_events()
        .when(UserCommand::Deactivate { actor: me() })
        .then_expect_error(DomainError::not_found("user not found"));
}

#[test]
fn deactivate_rejects_another_member() {
    let result = UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::Deactivate { actor: stranger() })
        .inspect_result();
    assert!(matches!(result, Err(DomainError::Forbidden(_))));
}

#[test]
fn deactivate_rejects_an_already_deactivated_user() {
    UserTest::with(())
        .given(vec![registered(), deactivated()])
        .when(UserCommand::Deactivate { actor: admin() })
        .then_expect_error(DomainError::conflict("user is deactivated"));
}

// ------------------------------------------------------- state and events

#[test]
fn apply_rebuilds_the_user_state() {
    let mut user = User::default();
    assert!(!user.exists());
    assert!(!user.is_active());
    let wh = hours(vec![Weekday::Wed], "08:00", "12:00");
    for event in [
        registered(),
        UserEvent::ProfileChanged {
            display_name: "Al".into(),
            time_zone: "Europe/Rome".into(),
            working_hours: Some(wh.clone()),
        },
        UserEvent::RoleChanged { role: Role::Admin },
    ] {
        user.apply(event);
    }
    assert!(user.exists());
    assert!(user.is_active());
    assert_eq!(user.id(), Some(user_id()));
    assert_eq!(user.email(), "Alice@Example.com");
    assert_eq!(user.display_name(), "Al");
    assert_eq!(user.time_zone(), "Europe/Rome");
    assert_eq!(user.role(), Role::Admin);
    assert_eq!(user.working_hours(), Some(&wh));
    user.apply(deactivated());
    assert!(user.exists());
    assert!(!user.is_active());
}

#[test]
fn event_types_are_variant_names_and_registration_is_version_2() {
    assert_eq!(registered().event_type(), "UserRegistered");
    assert_eq!(registered().event_version(), USER_REGISTERED_VERSION);
    assert_eq!(USER_REGISTERED_VERSION, "2.0");
    let others = [
        (
            UserEvent::ProfileChanged {
                display_name: "A".into(),
                time_zone: "UTC".into(),
                working_hours: None,
            },
            "ProfileChanged",
        ),
        (UserEvent::PasswordChanged {}, "PasswordChanged"),
        (UserEvent::RoleChanged { role: Role::Admin }, "RoleChanged"),
        (deactivated(), "UserDeactivated"),
    ];
    for (event, name) in others {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1.0");
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get(name).is_some(), "externally tagged: {json}");
        assert_eq!(serde_json::from_value::<UserEvent>(json).unwrap(), event);
    }
}

#[test]
fn weekday_converts_to_and_from_chrono() {
    for day in [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ] {
        let chrono_day: chrono::Weekday = day.into();
        assert_eq!(Weekday::from(chrono_day), day);
    }
}
