//! Who may reach which team resource, decided in one place per resource. A handler that
//! takes [`TeamMember`], [`TopicInTeam`] or [`MeetingInTeam`] cannot run for someone
//! outside the team: they get 404, the same as for a team that does not exist, so team
//! ids reveal nothing. Admin-only actions call [`TeamMember::require_admin`] (403).
//!
//! Every change a member makes to a team (any request but GET and HEAD) also takes one
//! from their allowance of actions ([`super::Shared::action_rate`]), here too, so that no
//! form can be sent faster than that; the few routes with a limit of their own (posting and
//! editing messages, creating topics and meetings, call tickets) are named below.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::Method;
use axum::http::request::Parts;

use super::{AppState, Error};
use crate::auth::Viewer;
use crate::store::{Meeting, Role, Team, Topic};

/// The viewer, who is a member of the team named by the `{team_id}` path segment.
#[derive(Debug, Clone)]
pub struct TeamMember {
    pub viewer: Viewer,
    pub team: Team,
    pub role: Role,
}

impl TeamMember {
    /// Refuses (403) unless the viewer is an admin or the owner.
    pub fn require_admin(&self) -> Result<(), Error> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden("Only the team's owner and admins can do this.".into()))
        }
    }

    /// Refuses (403) unless the viewer owns the team.
    pub fn require_owner(&self) -> Result<(), Error> {
        if self.role == Role::Owner {
            Ok(())
        } else {
            Err(Error::Forbidden("Only the team's owner can do this.".into()))
        }
    }

    pub fn user_id(&self) -> i64 {
        self.viewer.user.id
    }
}

/// A topic of the viewer's team (`{team_id}` and `{topic_id}`).
#[derive(Debug, Clone)]
pub struct TopicInTeam {
    pub member: TeamMember,
    pub topic: Topic,
}

/// A meeting of the viewer's team (`{team_id}` and `{meeting_id}`).
#[derive(Debug, Clone)]
pub struct MeetingInTeam {
    pub member: TeamMember,
    pub meeting: Meeting,
}

impl MeetingInTeam {
    /// Refuses (403) unless the viewer hosts the meeting or administers the team.
    pub fn require_host_or_admin(&self) -> Result<(), Error> {
        if self.meeting.created_by == self.member.user_id() || self.member.role.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden("Only the meeting's host or a team admin can do this.".into()))
        }
    }
}

/// A meeting scheduled by a team of which the viewer is a member (`{scheduled_id}`).
pub struct ScheduledInTeam {
    pub member: TeamMember,
    pub scheduled: crate::store::Scheduled,
}

impl ScheduledInTeam {
    /// Refuses (403) unless the viewer scheduled it or administers the team.
    pub fn require_host_or_admin(&self) -> Result<(), Error> {
        if self.scheduled.created_by == self.member.user_id() || self.member.role.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden("Only the meeting's host (who scheduled it) or a team admin can do this.".into()))
        }
    }
}

impl FromRequestParts<AppState> for ScheduledInTeam {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let member = TeamMember::from_request_parts(parts, state).await?;
        let id = id_param(parts, state, "scheduled_id").await?;
        let scheduled = state.store.scheduled(member.team.id, id).await?.ok_or(Error::NotFound)?;
        Ok(ScheduledInTeam { member, scheduled })
    }
}

/// The numeric path parameter `name`; anything else is a page that does not exist.
async fn id_param(parts: &mut Parts, state: &AppState, name: &str) -> Result<i64, Error> {
    let params = RawPathParams::from_request_parts(parts, state).await.map_err(|_| Error::NotFound)?;
    params.iter().find(|(k, _)| *k == name).and_then(|(_, v)| v.parse::<i64>().ok()).ok_or(Error::NotFound)
}

/// Team routes whose changes have a limit of their own, so they do not also count as actions.
const OWN_LIMITS: [&str; 6] = [
    // Posting and editing messages: `post_rate`.
    "/teams/{team_id}/topics/{topic_id}/messages",
    "/teams/{team_id}/topics/{topic_id}/messages/{seq}",
    // Creating topics, meetings and plans: `create_rate`.
    "/teams/{team_id}/forum",
    "/teams/{team_id}/meetings",
    "/teams/{team_id}/schedule",
    // A call's tickets: one per connection, and a reconnecting call must never be refused.
    "/teams/{team_id}/meetings/{meeting_id}/media",
];

impl FromRequestParts<AppState> for TeamMember {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        let team_id = id_param(parts, state, "team_id").await?;
        let (team, role) = state.store.team_membership(team_id, viewer.user.id).await?.ok_or(Error::NotFound)?;
        let changes = parts.method != Method::GET && parts.method != Method::HEAD;
        let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
        if changes && !route.is_some_and(|r| OWN_LIMITS.contains(&r)) {
            state.action_rate.allow(viewer.user.id, std::time::Instant::now()).map_err(|wait| {
                Error::TooMany(format!("You are making changes faster than this server allows. Try again in {wait} s."))
            })?;
        }
        Ok(TeamMember { viewer, team, role })
    }
}

impl FromRequestParts<AppState> for TopicInTeam {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let member = TeamMember::from_request_parts(parts, state).await?;
        let topic_id = id_param(parts, state, "topic_id").await?;
        let topic = state.store.topic(member.team.id, topic_id).await?.ok_or(Error::NotFound)?;
        Ok(TopicInTeam { member, topic })
    }
}

impl FromRequestParts<AppState> for MeetingInTeam {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let member = TeamMember::from_request_parts(parts, state).await?;
        let meeting_id = id_param(parts, state, "meeting_id").await?;
        let meeting = state.store.meeting(member.team.id, meeting_id).await?.ok_or(Error::NotFound)?;
        Ok(MeetingInTeam { member, meeting })
    }
}
