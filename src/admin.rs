//! `floo admin grant | revoke | list`: instance admins, from the command line, on the
//! database the server uses.

use anyhow::{Context, bail};

use crate::clock::now_ms;
use crate::config::{AdminAction, AdminArgs, AdminWho};
use crate::store::{Store, User, Who};

/// Carries out one admin command; what it did is printed on stdout.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let url = args.database_url();
    let store = Store::connect(&url, 2).await.with_context(|| format!("opening the database ({url})"))?;
    match &args.action {
        AdminAction::Grant(who) => {
            let user = one_user(&store, who).await?;
            if store.grant_admin(user.id, now_ms()).await? {
                println!("{} is now an instance admin.", describe(&user));
            } else {
                println!("{} was an instance admin already.", describe(&user));
            }
        }
        AdminAction::Revoke(who) => {
            let user = one_user(&store, who).await?;
            if store.revoke_admin(user.id).await? {
                println!("{} is no longer an instance admin.", describe(&user));
            } else {
                println!("{} was not an instance admin.", describe(&user));
            }
        }
        AdminAction::List => {
            let admins = store.admins().await?;
            if admins.is_empty() {
                println!("No instance admins yet. Grant one with: floo admin grant --email ADDRESS");
            }
            for (user, granted_at) in admins {
                println!("{}\tsince {}", describe(&user), crate::clock::format_utc(granted_at));
            }
        }
    }
    store.close().await;
    Ok(())
}

/// The one user `who` names, or a clear error.
async fn one_user(store: &Store, who: &AdminWho) -> anyhow::Result<User> {
    let who = match (&who.email, &who.identity) {
        (Some(email), _) => Who::Email(email.clone()),
        (None, Some(identity)) => {
            let Some((provider, subject)) = identity.split_once(':') else {
                bail!("--identity takes PROVIDER:SUBJECT (for example dev:alice or google:1234), not {identity:?}");
            };
            Who::Identity { provider: provider.to_owned(), subject: subject.to_owned() }
        }
        (None, None) => bail!("say whom: --email ADDRESS or --identity PROVIDER:SUBJECT"),
    };
    let mut users = store.find_users(&who).await?;
    match users.len() {
        0 => bail!("no user {}: they must have signed in to Floo once", describe_who(&who)),
        1 => Ok(users.remove(0)),
        _ => {
            let found: Vec<String> = users.iter().map(describe).collect();
            bail!("{} is more than one user ({}); name one with --identity", describe_who(&who), found.join("; "))
        }
    }
}

fn describe(user: &User) -> String {
    let email = user.email.as_deref().map(|e| format!(" <{e}>")).unwrap_or_default();
    format!("{}{email} ({}:{})", user.display_name, user.provider, user.subject)
}

fn describe_who(who: &Who) -> String {
    match who {
        Who::Email(email) => format!("with the e-mail {email}"),
        Who::Identity { provider, subject } => format!("{provider}:{subject}"),
    }
}
