//! Sign-in through an OAuth 2.0 / OpenID Connect provider: authorization code with PKCE
//! and a single-use `state`, then the identity from the provider's userinfo endpoint.
//! Google is one such provider with well-known endpoints; any other is configured by its
//! issuer (discovery) or its endpoints.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use crate::config::Config;

/// A configured sign-in provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The path segment of its routes: `/auth/{key}/start`, `/auth/{key}/callback`.
    pub key: String,
    /// What users are keyed by, with the subject: `google`, or the issuer URL.
    pub identity: String,
    /// The button text: "Sign in with {label}".
    pub label: String,
    auth_url: String,
    token_url: String,
    userinfo_url: String,
    client_id: String,
    client_secret: String,
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub display_name: String,
    pub email: Option<String>,
    /// The provider vouches for the e-mail (OIDC `email_verified`): only such an e-mail
    /// can make someone an instance admin (`--admin-email`).
    pub email_verified: bool,
    pub avatar_url: Option<String>,
}

/// Why a sign-in through a provider failed. Shown to the user in plain words.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider's configuration is unusable (bad URL, discovery failed).
    #[error("the sign-in provider is misconfigured: {0}")]
    Config(String),
    /// The provider refused the code (expired, already used, wrong verifier).
    #[error("the sign-in provider did not accept the sign-in: {0}")]
    TokenExchange(String),
    /// The userinfo endpoint failed or answered without a subject.
    #[error("the sign-in provider did not say who you are: {0}")]
    Userinfo(String),
}

/// A login sent to the provider: where the browser goes, and what the callback needs.
pub struct StartedLogin {
    pub authorize_url: String,
    pub state: String,
    pub pkce_verifier: String,
}

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct Userinfo {
    sub: String,
    name: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    /// A boolean, or (some providers) the string "true".
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    picture: Option<String>,
}

/// The HTTP client for talking to providers. It never follows redirects (that would open
/// the server to request forgery through a hostile provider response).
pub fn http_client() -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| ProviderError::Config(e.to_string()))
}

impl Provider {
    /// The providers a configuration enables: Google, then a generic OpenID Connect one.
    pub async fn from_config(config: &Config, http: &reqwest::Client) -> Result<Vec<Provider>, ProviderError> {
        let mut providers = Vec::new();
        if let (Some(id), Some(secret)) = (&config.google.google_client_id, &config.google.google_client_secret) {
            providers.push(Provider {
                key: "google".into(),
                identity: "google".into(),
                label: "Google".into(),
                auth_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
                token_url: "https://oauth2.googleapis.com/token".into(),
                userinfo_url: "https://openidconnect.googleapis.com/v1/userinfo".into(),
                client_id: id.clone(),
                client_secret: secret.clone(),
            });
        }
        let oidc = &config.oidc;
        if let (Some(id), Some(secret)) = (&oidc.oidc_client_id, &oidc.oidc_client_secret) {
            let discovered = match &oidc.oidc_issuer {
                Some(issuer) => Some(discover(http, issuer).await?),
                None => None,
            };
            let pick = |explicit: &Option<String>, found: Option<String>, what: &str| {
                explicit
                    .clone()
                    .or(found)
                    .ok_or_else(|| ProviderError::Config(format!("no {what}: set --oidc-issuer or --oidc-{what}-url")))
            };
            let auth_url =
                pick(&oidc.oidc_auth_url, discovered.as_ref().map(|d| d.authorization_endpoint.clone()), "auth")?;
            let token_url = pick(&oidc.oidc_token_url, discovered.as_ref().map(|d| d.token_endpoint.clone()), "token")?;
            let userinfo_url = pick(
                &oidc.oidc_userinfo_url,
                discovered.as_ref().and_then(|d| d.userinfo_endpoint.clone()),
                "userinfo",
            )?;
            let identity = oidc.oidc_issuer.clone().unwrap_or_else(|| origin_of(&auth_url));
            providers.push(Provider {
                key: "oidc".into(),
                identity,
                label: oidc.oidc_name.clone(),
                auth_url,
                token_url,
                userinfo_url,
                client_id: id.clone(),
                client_secret: secret.clone(),
            });
        }
        Ok(providers)
    }

    fn client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        ProviderError,
    > {
        let bad = |e: url::ParseError| ProviderError::Config(e.to_string());
        Ok(BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_uri(AuthUrl::new(self.auth_url.clone()).map_err(bad)?)
            .set_token_uri(TokenUrl::new(self.token_url.clone()).map_err(bad)?)
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(bad)?))
    }

    /// Builds the authorization request: a fresh `state` and PKCE pair.
    pub fn start(&self, redirect_uri: &str) -> Result<StartedLogin, ProviderError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client(redirect_uri)?
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(StartedLogin {
            authorize_url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and asks who signed in.
    pub async fn finish(
        &self,
        http: &reqwest::Client,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, ProviderError> {
        let token = self
            .client(redirect_uri)?
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(|e| ProviderError::TokenExchange(describe_token_error(&e)))?;
        let response = http
            .get(&self.userinfo_url)
            .bearer_auth(token.access_token().secret())
            .send()
            .await
            .map_err(|e| ProviderError::Userinfo(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ProviderError::Userinfo(format!("userinfo answered {}", response.status())));
        }
        let info: Userinfo = response.json().await.map_err(|e| ProviderError::Userinfo(e.to_string()))?;
        if info.sub.is_empty() || info.sub.len() > 255 {
            return Err(ProviderError::Userinfo("no usable subject".into()));
        }
        let salvage = |name: Option<String>| name.and_then(|n| super::names::salvage(&n, 100));
        let display_name = salvage(info.name)
            .or_else(|| salvage(info.preferred_username))
            .or_else(|| salvage(info.email.clone()))
            .unwrap_or_else(|| "Unnamed user".into());
        Ok(Identity {
            subject: info.sub,
            display_name,
            email: info.email,
            email_verified: matches!(&info.email_verified, Some(serde_json::Value::Bool(true)))
                || matches!(&info.email_verified, Some(serde_json::Value::String(s)) if s == "true"),
            avatar_url: info.picture.filter(|p| p.starts_with("https://")),
        })
    }
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, ProviderError> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let fail = |e: String| ProviderError::Config(format!("discovery at {url} failed: {e}"));
    let response = http.get(&url).send().await.map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("status {}", response.status())));
    }
    response.json().await.map_err(|e| fail(e.to_string()))
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| url.to_owned())
}

fn describe_token_error<RE: std::error::Error + 'static>(
    e: &oauth2::RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => match r.error_description() {
            Some(d) => format!("{} ({d})", r.error()),
            None => r.error().to_string(),
        },
        other => other.to_string(),
    }
}
