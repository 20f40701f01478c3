//! The edge's limit on password guessing, against the real Keycloak behind
//! the shipped nginx: no spelling of the token endpoint or the login form
//! gets Keycloak's verdict on more guesses than the burst allows, and
//! nginx limits every spelling, because it limits every request with a
//! body under /realms/ rather than matching exact paths.

use std::net::{IpAddr, SocketAddr};

use super::{server, test_realm};
use crate::deploy::nginx::{Nginx, make_certs, nginx_missing};
use crate::helpers::free_port;

/// Requests sent per spelling: well past the burst (10) and the rate.
const TRIES: usize = 25;

#[tokio::test]
async fn password_guessing_is_limited_at_the_edge_in_every_spelling_keycloak_accepts() {
    let Some(kc) = server() else {
        return;
    };
    if nginx_missing() {
        return;
    }
    let realm = format!(
        "vg-edge-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let admin = kc.admin(&realm);
    assert_eq!(
        admin
            .create_realm(&test_realm(&realm, "http://127.0.0.1:9", |_| {}))
            .await
            .status(),
        201
    );
    let certs = make_certs();
    let keycloak: SocketAddr = kc.base.trim_start_matches("http://").parse().unwrap();
    let nginx = Nginx::start(
        &certs,
        free_port(),
        &["127.0.0.1:9".to_string()],
        keycloak,
        free_port(),
    )
    .await;
    let pem = std::fs::read(certs.path("ca.pem")).unwrap();

    let r = format!("/realms/{realm}");
    let token_spellings = [
        format!("{r}/protocol/openid-connect/token"),
        format!("{r}/protocol;x/openid-connect/token"),
        format!("{r}/protocol/openid-connect;x/token"),
        format!("{r}/protocol/openid-connect/token;x"),
        format!("{r};x/protocol/openid-connect/token"),
        format!("{r}//protocol/openid-connect/token"),
        format!("{r}/protocol//openid-connect/token"),
        format!("{r}/protocol/openid-connect/token/"),
        format!("{r}/%70rotocol/openid-connect/token"),
        format!("{r}/protocol%2Fopenid-connect%2Ftoken"),
        format!("{r}/./protocol/openid-connect/token"),
        format!("{r}/x/../protocol/openid-connect/token"),
        format!("{r}/PROTOCOL/openid-connect/token"),
        format!("{r}/protocol/openid-connect/TOKEN"),
    ];
    let guess = [
        ("grant_type", "password"),
        ("client_id", "voxgate-cli"),
        ("username", "alice"),
        ("password", "wrong"),
    ];
    let mut judged_somewhere = false;
    for (i, path) in token_spellings.iter().enumerate() {
        // A client address of its own per spelling: one bucket each.
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .local_address(format!("127.0.1.{}", i + 10).parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        let url = format!("{}{path}", nginx.origin());
        let mut judged = 0;
        let mut limited = 0;
        for _ in 0..TRIES {
            let response = client.post(&url).form(&guess).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            // Keycloak's verdict on the password itself.
            if body.contains("invalid_grant") {
                judged += 1;
            }
            if status == 429 {
                limited += 1;
            }
        }
        judged_somewhere |= judged > 0;
        // Keycloak 26 itself refuses `;`, non-normalised paths and other
        // letter case, so no spelling is judged past the burst; nginx limits
        // every one of them anyway, whatever a later Keycloak accepts.
        assert!(
            judged <= 11,
            "{path}: Keycloak judged {judged} of {TRIES} guesses ({limited} limited)"
        );
        assert!(limited >= TRIES - 11, "{path}: only {limited} limited");
    }
    assert!(judged_somewhere, "the plain spelling reaches Keycloak");

    // The login form's action, in the spellings Keycloak routes.
    for (i, action) in [
        format!("{r}/login-actions/authenticate"),
        format!("{r}/login-actions;x/authenticate"),
        format!("{r}/login-actions/authenticate;x"),
        format!("{r}//login-actions/authenticate"),
    ]
    .iter()
    .enumerate()
    {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .local_address(format!("127.0.2.{}", i + 10).parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        let url = format!("{}{action}", nginx.origin());
        let mut limited = 0;
        for _ in 0..TRIES {
            let response = client
                .post(&url)
                .form(&[("username", "alice"), ("password", "wrong")])
                .send()
                .await
                .unwrap();
            limited += usize::from(response.status() == 429);
        }
        assert!(limited >= TRIES - 11, "{action}: only {limited} limited");
    }
    admin.delete_realm_from_drop();
}
