//! Who belongs to a meeting: its organizer and its attendees. Members may see the meeting,
//! its events and its chat; everybody else is told it does not exist.
//!
//! This is the one place that folds the membership-changing events (`MeetingScheduled`,
//! `AttendeeInvited`, `AttendeeRemoved`): the aggregate keeps its attendees in a
//! [`Membership<Attendee>`], the realtime hub caches a plain [`Membership`] of ids, and the
//! projections can check and fold the same events with it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::MeetingEvent;
use super::values::Attendee;

/// One attendee entry of a [`Membership`]: the user's id alone, or with more about them
/// (the aggregate keeps each attendee's answer in the entry).
pub trait Invitee {
    /// The entry of a user who has just been invited.
    fn invited(user_id: Uuid, optional: bool) -> Self;
    /// The invited user.
    fn user_id(&self) -> Uuid;
}

impl Invitee for Uuid {
    fn invited(user_id: Uuid, _optional: bool) -> Self {
        user_id
    }

    fn user_id(&self) -> Uuid {
        *self
    }
}

impl Invitee for Attendee {
    fn invited(user_id: Uuid, optional: bool) -> Self {
        Attendee::invited(user_id, optional)
    }

    fn user_id(&self) -> Uuid {
        self.user_id
    }
}

/// A membership-changing event that does not fit the membership it is applied to. The
/// aggregate never records one; a projection that meets one has a broken stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// `MeetingScheduled` names a user twice (or the organizer as an attendee).
    #[error("{0} is listed twice")]
    ListedTwice(Uuid),
    /// `AttendeeInvited` for the organizer or an attendee.
    #[error("{0} already attends")]
    AlreadyAttends(Uuid),
    /// `AttendeeRemoved` or `AttendeeResponded` for someone who is no attendee.
    #[error("{0} does not attend")]
    DoesNotAttend(Uuid),
}

/// The organizer and the attendees of one meeting, attendees in invitation order.
///
/// `A` is what is kept per attendee: [`Uuid`] when only "who" matters, [`Attendee`] when
/// their answers are needed too. A membership before `MeetingScheduled` has no members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership<A = Uuid> {
    organizer: Option<Uuid>,
    attendees: Vec<A>,
}

// Not derived: a derive would require `A: Default`, which an attendee entry has no use for.
impl<A> Default for Membership<A> {
    fn default() -> Self {
        Self {
            organizer: None,
            attendees: Vec::new(),
        }
    }
}

impl<A: Invitee> Membership<A> {
    /// A membership as it stands, e.g. rebuilt from stored rows.
    pub fn new(organizer: Uuid, attendees: Vec<A>) -> Self {
        Self {
            organizer: Some(organizer),
            attendees,
        }
    }

    /// The organizer, once the meeting is scheduled.
    pub fn organizer(&self) -> Option<Uuid> {
        self.organizer
    }

    /// The attendees in invitation order (the organizer is never one of them).
    pub fn attendees(&self) -> &[A] {
        &self.attendees
    }

    /// The entry of `user`, if invited.
    pub fn attendee(&self, user: Uuid) -> Option<&A> {
        self.attendees.iter().find(|a| a.user_id() == user)
    }

    /// The entry of `user` to update what it keeps besides the id (an answer).
    pub(super) fn attendee_mut(&mut self, user: Uuid) -> Option<&mut A> {
        self.attendees.iter_mut().find(|a| a.user_id() == user)
    }

    /// Every attendee entry, to update what they keep besides the id.
    pub(super) fn attendees_mut(&mut self) -> impl Iterator<Item = &mut A> {
        self.attendees.iter_mut()
    }

    /// Whether `user` is invited.
    pub fn is_attendee(&self, user: Uuid) -> bool {
        self.attendee(user).is_some()
    }

    /// Whether `user` is the organizer or an attendee.
    pub fn contains(&self, user: Uuid) -> bool {
        self.organizer == Some(user) || self.is_attendee(user)
    }

    /// The organizer, then the attendees in invitation order.
    pub fn members(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.organizer
            .into_iter()
            .chain(self.attendees.iter().map(Invitee::user_id))
    }

    /// The members sorted by id, each once: who may see the meeting's events.
    pub fn sorted_members(&self) -> Vec<Uuid> {
        let mut members: Vec<Uuid> = self.members().collect();
        members.sort_unstable();
        members.dedup();
        members
    }

    /// The same membership with ids only.
    pub fn ids(&self) -> Membership {
        Membership {
            organizer: self.organizer,
            attendees: self.attendees.iter().map(Invitee::user_id).collect(),
        }
    }

    /// Whether `event` fits this membership (see [`MembershipError`]); events that do not
    /// change or need membership always fit.
    pub fn check(&self, event: &MeetingEvent) -> Result<(), MembershipError> {
        match event {
            MeetingEvent::MeetingScheduled {
                organizer_id,
                attendees,
                ..
            } => {
                let mut seen = HashSet::with_capacity(attendees.len() + 1);
                seen.insert(*organizer_id);
                match attendees.iter().find(|a| !seen.insert(a.user_id)) {
                    Some(twice) => Err(MembershipError::ListedTwice(twice.user_id)),
                    None => Ok(()),
                }
            }
            MeetingEvent::AttendeeInvited { user_id, .. } if self.contains(*user_id) => {
                Err(MembershipError::AlreadyAttends(*user_id))
            }
            MeetingEvent::AttendeeRemoved { user_id }
            | MeetingEvent::AttendeeResponded { user_id, .. }
                if !self.is_attendee(*user_id) =>
            {
                Err(MembershipError::DoesNotAttend(*user_id))
            }
            _ => Ok(()),
        }
    }

    /// Folds a membership-changing event in; other events change nothing. Never fails: an
    /// invitation of a member or a removal of a stranger changes nothing either.
    pub fn apply(&mut self, event: &MeetingEvent) {
        match event {
            MeetingEvent::MeetingScheduled {
                organizer_id,
                attendees,
                ..
            } => {
                self.organizer = Some(*organizer_id);
                self.attendees = attendees
                    .iter()
                    .map(|spec| A::invited(spec.user_id, spec.optional))
                    .collect();
            }
            MeetingEvent::AttendeeInvited { user_id, optional } if !self.is_attendee(*user_id) => {
                self.attendees.push(A::invited(*user_id, *optional));
            }
            MeetingEvent::AttendeeRemoved { user_id } => {
                self.attendees.retain(|a| a.user_id() != *user_id);
            }
            _ => {}
        }
    }
}

impl Membership {
    /// Who may see `event`, given the membership right after it: the members then, and a
    /// removed attendee, who must learn of the removal. The one audience rule of every
    /// delivery path (`/v1/changes`, live websocket frames, resumes), sorted, each once.
    pub fn audience(&self, event: &MeetingEvent) -> Vec<Uuid> {
        let mut audience = self.sorted_members();
        if let MeetingEvent::AttendeeRemoved { user_id } = event {
            if let Err(at) = audience.binary_search(user_id) {
                audience.insert(at, *user_id);
            }
        }
        audience
    }

    /// The users `event` makes members, without a membership to fold it into: the organizer
    /// and attendees of `MeetingScheduled`, the user of `AttendeeInvited`. Lets a projection
    /// find whom a batch names (to load their names) before it loads any membership.
    pub fn joining(event: &MeetingEvent) -> impl Iterator<Item = Uuid> + '_ {
        let (organizer, attendees, invited) = match event {
            MeetingEvent::MeetingScheduled {
                organizer_id,
                attendees,
                ..
            } => (Some(*organizer_id), attendees.as_slice(), None),
            MeetingEvent::AttendeeInvited { user_id, .. } => (None, &[][..], Some(*user_id)),
            _ => (None, &[][..], None),
        };
        organizer
            .into_iter()
            .chain(attendees.iter().map(|a| a.user_id))
            .chain(invited)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::meeting::values::AttendeeSpec;

    const ORG: Uuid = Uuid::from_u128(1);
    const ANN: Uuid = Uuid::from_u128(2);
    const BOB: Uuid = Uuid::from_u128(3);
    const EVE: Uuid = Uuid::from_u128(4);

    fn scheduled(organizer_id: Uuid, attendees: &[Uuid]) -> MeetingEvent {
        let at = Utc.with_ymd_and_hms(2030, 1, 7, 10, 0, 0).unwrap();
        MeetingEvent::MeetingScheduled {
            meeting_id: Uuid::from_u128(100),
            organizer_id,
            title: "T".into(),
            description: None,
            starts_at: at,
            ends_at: at,
            time_zone: "UTC".into(),
            location: None,
            attendees: attendees
                .iter()
                .map(|&user_id| AttendeeSpec {
                    user_id,
                    optional: false,
                })
                .collect(),
            recurrence: None,
        }
    }

    fn invited(user_id: Uuid) -> MeetingEvent {
        MeetingEvent::AttendeeInvited {
            user_id,
            optional: true,
        }
    }

    fn removed(user_id: Uuid) -> MeetingEvent {
        MeetingEvent::AttendeeRemoved { user_id }
    }

    /// Given these events, the membership they leave.
    fn given<A: Invitee>(events: &[MeetingEvent]) -> Membership<A> {
        let mut membership = Membership::default();
        for event in events {
            membership.apply(event);
        }
        membership
    }

    #[test]
    fn nobody_belongs_to_a_meeting_before_it_is_scheduled() {
        let membership: Membership = given(&[]);
        assert_eq!(membership.organizer(), None);
        assert!(!membership.contains(Uuid::nil()));
        assert_eq!(membership.sorted_members(), Vec::<Uuid>::new());
    }

    #[test]
    fn scheduling_inviting_and_removing_decide_who_belongs() {
        let membership: Membership =
            given(&[scheduled(ORG, &[BOB, ANN]), invited(EVE), removed(BOB)]);
        assert_eq!(membership.organizer(), Some(ORG));
        assert_eq!(membership.attendees(), &[ANN, EVE]);
        assert_eq!(
            membership.members().collect::<Vec<_>>(),
            vec![ORG, ANN, EVE]
        );
        assert!(membership.contains(ORG) && membership.contains(ANN));
        assert!(!membership.contains(BOB));
        assert!(membership.is_attendee(EVE) && !membership.is_attendee(ORG));
    }

    #[test]
    fn members_are_sorted_once_for_the_audience() {
        let membership: Membership = given(&[scheduled(BOB, &[EVE, ORG])]);
        assert_eq!(membership.sorted_members(), vec![ORG, BOB, EVE]);
    }

    #[test]
    fn scheduling_and_inviting_name_who_joins() {
        let joining = |event: &MeetingEvent| Membership::joining(event).collect::<Vec<_>>();
        assert_eq!(joining(&scheduled(ORG, &[BOB, ANN])), vec![ORG, BOB, ANN]);
        assert_eq!(joining(&invited(EVE)), vec![EVE]);
        assert_eq!(joining(&removed(BOB)), Vec::<Uuid>::new());
        let events = [scheduled(ORG, &[BOB]), invited(EVE)];
        let membership: Membership = given(&events);
        let joined: Vec<Uuid> = events.iter().flat_map(Membership::joining).collect();
        assert_eq!(joined, membership.members().collect::<Vec<_>>());
    }

    #[test]
    fn inviting_a_member_again_or_removing_a_stranger_changes_nothing() {
        let events = [scheduled(ORG, &[ANN])];
        let before: Membership = given(&events);
        let mut after = before.clone();
        after.apply(&invited(ANN));
        after.apply(&removed(EVE));
        assert_eq!(after, before);
    }

    #[test]
    fn answers_are_kept_beside_the_same_members() {
        let events = [scheduled(ORG, &[ANN]), invited(EVE), removed(ANN)];
        let attendees: Membership<Attendee> = given(&events);
        assert_eq!(attendees.attendees(), &[Attendee::invited(EVE, true)]);
        assert_eq!(attendees.ids(), given::<Uuid>(&events));
    }

    #[test]
    fn events_that_do_not_fit_the_membership_are_named() {
        let empty: Membership = Membership::default();
        assert_eq!(
            empty.check(&scheduled(ORG, &[ANN, BOB, ANN])),
            Err(MembershipError::ListedTwice(ANN))
        );
        assert_eq!(
            empty.check(&scheduled(ORG, &[ORG])),
            Err(MembershipError::ListedTwice(ORG))
        );
        assert_eq!(empty.check(&scheduled(ORG, &[ANN, BOB])), Ok(()));

        let membership: Membership = given(&[scheduled(ORG, &[ANN])]);
        assert_eq!(
            membership.check(&invited(ORG)),
            Err(MembershipError::AlreadyAttends(ORG))
        );
        assert_eq!(
            membership.check(&invited(ANN)),
            Err(MembershipError::AlreadyAttends(ANN))
        );
        assert_eq!(membership.check(&invited(BOB)), Ok(()));
        assert_eq!(
            membership.check(&removed(ORG)),
            Err(MembershipError::DoesNotAttend(ORG))
        );
        let answered = MeetingEvent::AttendeeResponded {
            user_id: BOB,
            response: crate::meeting::values::ResponseStatus::Accepted,
            comment: None,
            occurrence: None,
        };
        assert_eq!(
            membership.check(&answered),
            Err(MembershipError::DoesNotAttend(BOB))
        );
        assert_eq!(membership.check(&removed(ANN)), Ok(()));
        assert_eq!(
            MembershipError::DoesNotAttend(BOB).to_string(),
            format!("{BOB} does not attend")
        );
    }
}
