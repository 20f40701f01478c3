//! The browser login's OAuth side, with `openidconnect`: authorization URL
//! (code + PKCE S256, state, nonce), code exchange and refresh. ID tokens
//! are verified by our own [`super::token::TokenValidator`] so there is one
//! key cache and one set of rules for every token we accept.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreTokenResponse,
};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;

use super::provider::Endpoints;
use crate::config::OidcConfig;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

pub struct Authorization {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The provider refused (`invalid_grant` & co.): the grant is dead.
    #[error("the identity provider refused: {0}")]
    Refused(String),
    /// Network trouble or a 5xx: the grant may still be fine.
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

fn client(config: &OidcConfig, endpoints: &Endpoints, redirect: &str) -> Result<Client, String> {
    let mut c = CoreClient::new(
        ClientId::new(config.client_id.clone()),
        IssuerUrl::new(endpoints.issuer.clone()).map_err(|e| e.to_string())?,
        JsonWebKeySet::new(Vec::new()),
    )
    .set_auth_uri(
        AuthUrl::new(endpoints.authorization_endpoint.clone()).map_err(|e| e.to_string())?,
    )
    .set_token_uri(TokenUrl::new(endpoints.token_endpoint.clone()).map_err(|e| e.to_string())?)
    .set_redirect_uri(RedirectUrl::new(redirect.to_string()).map_err(|e| e.to_string())?);
    if let Some(secret) = &config.client_secret {
        c = c.set_client_secret(ClientSecret::new(secret.expose_secret().to_string()));
    }
    Ok(c)
}

pub fn authorization(
    config: &OidcConfig,
    endpoints: &Endpoints,
    redirect: &str,
) -> Result<Authorization, String> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client(config, endpoints, redirect)?
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    Ok(Authorization {
        url,
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

pub async fn exchange_code(
    http: &reqwest::Client,
    config: &OidcConfig,
    endpoints: &Endpoints,
    redirect: &str,
    code: &str,
    verifier: &str,
) -> Result<Tokens, ExchangeError> {
    let client = client(config, endpoints, redirect).map_err(ExchangeError::Unreachable)?;
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(&Http(http.clone()))
        .await;
    map_response(response)
}

pub async fn refresh(
    http: &reqwest::Client,
    config: &OidcConfig,
    endpoints: &Endpoints,
    redirect: &str,
    refresh_token: &str,
) -> Result<Tokens, ExchangeError> {
    let client = client(config, endpoints, redirect).map_err(ExchangeError::Unreachable)?;
    let token = RefreshToken::new(refresh_token.to_string());
    let response = client
        .exchange_refresh_token(&token)
        .request_async(&Http(http.clone()))
        .await;
    map_response(response)
}

type Outcome = Result<
    CoreTokenResponse,
    RequestTokenError<HttpError, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
>;

fn map_response(response: Outcome) -> Result<Tokens, ExchangeError> {
    match response {
        Ok(r) => Ok(Tokens {
            access_token: r.access_token().secret().clone(),
            refresh_token: r.refresh_token().map(|t| t.secret().clone()),
            id_token: r.id_token().map(|t| t.to_string()),
            expires_in: r.expires_in().unwrap_or(std::time::Duration::from_secs(60)),
        }),
        Err(RequestTokenError::ServerResponse(e)) => Err(ExchangeError::Refused(format!(
            "{}{}",
            e.error().as_ref(),
            e.error_description()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ))),
        Err(RequestTokenError::Request(e)) => Err(ExchangeError::Unreachable(e.to_string())),
        Err(RequestTokenError::Parse(e, _)) => Err(ExchangeError::Unreachable(format!(
            "unreadable answer: {e}"
        ))),
        Err(RequestTokenError::Other(e)) => Err(ExchangeError::Unreachable(e)),
    }
}

/// openidconnect's HTTP client, on our single reqwest/rustls stack.
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

async fn send(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| HttpError(crate::error::chain(&e)))?;
    let status = response.status();
    // 5xx means the provider is in trouble, not that the grant is bad.
    if status.is_server_error() {
        return Err(HttpError(format!("HTTP {status}")));
    }
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut out = http::Response::new(body.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}
