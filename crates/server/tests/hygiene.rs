//! Log hygiene: with debug logging (our crates and the libraries under them), a run through every
//! credential-bearing flow leaves none of the secrets it used in the process's output —
//! passwords, client secrets, authorization codes, access, refresh and ID tokens, session
//! cookies, CSRF tokens, enrollment links.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use support::{
    ALICE, Browser, CONFIDENTIAL, ClientAuth, Idp, PASSWORD, SERVICE, code_params, exchange_code,
    http, introspect, pkce, refresh, token_request,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_carry_no_secret_of_any_flow() {
    let idp = Idp::start_with(
        TestDb::sqlite(true).await,
        &[("OPENTRUSTY_LOG_LEVEL", "debug")],
    )
    .await;
    let mut secrets: Vec<String> = vec![
        PASSWORD.to_owned(),
        CONFIDENTIAL.secret.unwrap().to_owned(),
        SERVICE.secret.unwrap().to_owned(),
    ];

    // Authorization code flow with PKCE, refresh, introspection, userinfo, revocation.
    let browser = Browser::new(&idp);
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(
        CONFIDENTIAL,
        "openid email offline_access",
        "hygiene-state",
        &challenge,
    ));
    let journey = browser.journey(url, Some((ALICE, PASSWORD))).await;
    let code = journey.code();
    let r = exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    r.expect_status(200);
    let tokens = r.json.clone();
    let r = refresh(
        &idp,
        CONFIDENTIAL,
        tokens["refresh_token"].as_str().unwrap(),
        None,
    )
    .await;
    r.expect_status(200);
    let refreshed = r.json.clone();
    // Replaying the used code and the rotated refresh token logs the failures, not the values.
    exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    refresh(
        &idp,
        CONFIDENTIAL,
        tokens["refresh_token"].as_str().unwrap(),
        None,
    )
    .await;
    introspect(
        &idp,
        ClientAuth::of(CONFIDENTIAL),
        refreshed["access_token"].as_str().unwrap(),
    )
    .await;
    support::userinfo(&idp, refreshed["access_token"].as_str().unwrap()).await;
    for t in [&tokens, &refreshed] {
        for k in ["access_token", "refresh_token", "id_token"] {
            if let Some(v) = t[k].as_str() {
                secrets.push(v.to_owned());
            }
        }
    }
    secrets.push(code);
    secrets.push(verifier);

    // Client credentials; a wrong secret.
    let r = token_request(
        &idp,
        ClientAuth::of(SERVICE),
        &[("grant_type", "client_credentials")],
    )
    .await;
    secrets.push(r.json["access_token"].as_str().unwrap().to_owned());
    token_request(
        &idp,
        ClientAuth::Basic(SERVICE.client_id, "a-wrong-client-secret-value"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    secrets.push("a-wrong-client-secret-value".to_owned());

    // Wrong passwords on the page and on the console sign-in.
    let wrong = "a wrong password that must stay secret";
    let _ = http()
        .post(idp.url("/api/v1/auth/login"))
        .json(&json!({ "email": ALICE, "password": wrong }))
        .send()
        .await;
    secrets.push(wrong.to_owned());

    // Enrollment.
    let (_, token) = idp.invite("dora@acme.example", None).await;
    let enroller = Browser::new(&idp);
    let page = enroller
        .get(&idp.url(&format!("/enroll?token={token}")))
        .await;
    let csrf = support::inputs(&page.body)["csrf_token"].clone();
    let new_password = "dora's secret new passphrase";
    enroller
        .post(
            &idp.url("/enroll"),
            &[
                ("csrf_token", csrf.as_str()),
                ("token", token.as_str()),
                ("password", new_password),
                ("password_confirm", new_password),
            ],
        )
        .await
        .expect_status(200);
    secrets.extend([token, csrf, new_password.to_owned()]);

    // Cookies the enrollment page set.
    for c in page.set_cookies() {
        if let Some((_, v)) = c.split(';').next().and_then(|kv| kv.split_once('='))
            && v.len() >= 20
        {
            secrets.push(v.to_owned());
        }
    }

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let output = idp.server.output();
    let lines = output.lines().count();
    assert!(lines > 20, "debug logging produced only {lines} lines");
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "debug logging was not on"
    );
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret reached the log ({} characters, starting {:?})",
            secret.len(),
            &secret[..secret.len().min(6)]
        );
    }
    let parsed: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    eprintln!(
        "log hygiene: {} lines ({} JSON), {} secrets checked",
        lines,
        parsed.len(),
        secrets.len()
    );
}
