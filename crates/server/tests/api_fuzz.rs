//! API fuzzing of the admin plane with schemathesis (from PyPI, pinned in
//! tests/python-requirements.txt) against `/api/v1/openapi.json`, signed in as the platform
//! administrator: generated requests for every operation, bounded examples per operation; no
//! 5xx, and every response matches the documented status codes, content types, headers and
//! schemas. (The check that schema-valid data is always accepted is left out: cursors are opaque
//! and emails, URIs and names have rules no JSON Schema expresses, so 422 is a correct answer.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use opentrusty_testkit::TestDb;
use support::{Server, free_port, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_undocumented_response() {
    let db = TestDb::sqlite(true).await;
    let dir = tempfile::tempdir().unwrap();
    let password = "schemathesis operator passphrase";
    let mut server = Server::start(
        dir.path(),
        "all",
        db.url(),
        free_port(),
        &[
            ("OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL", "root@example.com"),
            ("OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD", password),
            ("OPENTRUSTY_LOG_LEVEL", "warn"),
        ],
    );
    server.wait_healthy().await;
    let (cookie, csrf) =
        support::console_sign_in(&server.url(""), "root@example.com", password).await;

    let schemathesis = opentrusty_testkit::python_tool("schemathesis");
    let base = server.url("");
    let session = cookie.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis)
            .args([
                "run",
                &format!("{base}/api/v1/openapi.json"),
                "--url",
                &base,
            ])
            .args(["-H", &format!("Cookie: ot_session={cookie}")])
            .args(["-H", &format!("X-CSRF-Token: {csrf}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance",
                "--max-examples",
                "20",
                "--seed",
                "20261129",
                "--no-color",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{report}\n--- server ---\n{}",
        server.output()
    );
    let summary = report
        .lines()
        .find(|l| l.contains("generated,"))
        .unwrap_or("no summary")
        .trim()
        .to_owned();
    eprintln!("schemathesis: {summary}");
    assert!(summary.contains("passed"), "{report}");
    // The session stayed usable throughout: the run exercised the API signed in.
    let me = http()
        .get(server.url("/api/v1/auth/me"))
        .header("cookie", format!("ot_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}
