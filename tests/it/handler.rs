//! The README's handler (`helpers::say`, word for word): a send that
//! fails answers with a status and the condition, never `200 OK`.

use libtest_mimic::Trial;

use crate::helpers::{App, Setup, run_sql, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [a_handler_returning_error_answers_a_failed_send_with_its_status],
    ]
}

async fn a_handler_returning_error_answers_a_failed_send_with_its_status() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let said = app
        .http
        .post(app.url("/rooms/lobby"))
        .body("hi")
        .send()
        .await
        .expect("an answer");
    assert_eq!(said.status(), 200);
    assert_eq!(said.text().await.expect("the id"), "lobby:1");

    let bad = app
        .http
        .post(app.url("/rooms/bad%0Aname"))
        .body("hi")
        .send()
        .await
        .expect("an answer");
    assert_eq!(bad.status(), 400, "a channel name with a line break");
    let body: serde_json::Value = bad.json().await.expect("a JSON body");
    assert_eq!(body["error"], "bad-request", "{body}");

    // The event log fails: its table is gone.
    run_sql(
        app.database_url(),
        &["ALTER TABLE eventstream_events RENAME TO eventstream_events_away"],
    )
    .await;
    let failed = app
        .http
        .post(app.url("/rooms/lobby"))
        .body("hi again")
        .send()
        .await
        .expect("an answer");
    assert_eq!(failed.status(), 500, "a failed send is not a success");
    let body: serde_json::Value = failed.json().await.expect("a JSON body");
    assert_eq!(body["error"], "internal-error", "{body}");
    assert_eq!(body["text"], "the event could not be stored", "{body}");
    app.stop().await;
}
