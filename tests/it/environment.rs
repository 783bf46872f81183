//! Settings from the environment, in a process of its own (its
//! environment is the test's to set): `ROCKET_EVENTSTREAM_<KEY>` works for
//! every key and overrides `Rocket.toml`; a misspelled one aborts launch,
//! naming the key meant.

use libtest_mimic::Trial;

use crate::helpers::{Instance, Launch, PUBLISH_KEY, Setup, TestDatabase};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            a_publish_key_from_the_environment_overrides_rocket_toml,
            a_misspelled_variable_aborts_launch_naming_the_key_meant,
            a_redis_table_from_the_environment_overrides_rocket_toml,
            a_release_build_launches_without_a_secret_key,
        ],
    ]
}

const FILE_KEY: &str = "file-publish-key-0123456789";
const ENV_KEY: &str = "env-publish-key-0123456789";

/// A `Rocket.toml` setting the publish key, in a directory of its own.
fn rocket_toml() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::write(
        dir.path().join("Rocket.toml"),
        format!("[default.eventstream]\npublish_key = \"{FILE_KEY}\"\n"),
    )
    .expect("Rocket.toml");
    dir
}

async fn publish(url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/events/news"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "data": 1 }))
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

async fn a_publish_key_from_the_environment_overrides_rocket_toml() {
    let database = TestDatabase::create(Setup::Sqlite).await;
    let dir = rocket_toml();
    let config = dir.path().join("Rocket.toml");
    let config = config.to_str().expect("a UTF-8 path");

    // Rocket.toml alone: its key works.
    let from_file = Instance::launch(
        &database.url,
        Launch {
            without: &["eventstream.publish_key"],
            env: &[("ROCKET_CONFIG", config)],
            ..Launch::default()
        },
    )
    .await;
    assert_eq!(publish(&from_file.url, FILE_KEY).await, 201);
    from_file.kill().await;

    // The variable wins over the file, as Rocket's own ROCKET_* do.
    let from_env = Instance::launch(
        &database.url,
        Launch {
            without: &["eventstream.publish_key"],
            env: &[
                ("ROCKET_CONFIG", config),
                ("ROCKET_EVENTSTREAM_PUBLISH_KEY", ENV_KEY),
            ],
            ..Launch::default()
        },
    )
    .await;
    assert_eq!(publish(&from_env.url, ENV_KEY).await, 201);
    assert_eq!(publish(&from_env.url, FILE_KEY).await, 403);
    assert_eq!(publish(&from_env.url, PUBLISH_KEY).await, 403);
    from_env.kill().await;
}

async fn a_misspelled_variable_aborts_launch_naming_the_key_meant() {
    let database = TestDatabase::create(Setup::Sqlite).await;
    let printed = Instance::refused(
        &database.url,
        Launch {
            env: &[("ROCKET_EVENTSTREAM_PUBLSH_KEY", ENV_KEY)],
            ..Launch::default()
        },
    )
    .await;
    assert!(
        printed.contains("eventstream.publsh_key") && printed.contains("`publish_key`"),
        "the error names the variable's key and the one meant: {printed}"
    );
    assert!(
        !printed.contains(ENV_KEY),
        "no secret in the output: {printed}"
    );
}

/// django-eventstream's `EVENTSTREAM_REDIS` table, given as a variable,
/// overrides a `redis_url` in the file like any other variable (the URL
/// made from the table keeps where it came from).
async fn a_redis_table_from_the_environment_overrides_rocket_toml() {
    let database = TestDatabase::create(Setup::Sqlite).await;
    let dir = tempfile::tempdir().expect("a directory");
    let config = dir.path().join("Rocket.toml");
    std::fs::write(
        &config,
        "[default.eventstream]\nredis_url = \"redis://file-host:6379/0\"\n",
    )
    .expect("Rocket.toml");
    let instance = Instance::launch(
        &database.url,
        Launch {
            env: &[
                ("ROCKET_CONFIG", config.to_str().expect("a UTF-8 path")),
                ("ROCKET_EVENTSTREAM_REDIS", "{host=\"env-host\"}"),
            ],
            ..Launch::default()
        },
    )
    .await;
    instance.kill().await;
}

/// The release profile needs no Rocket `secret_key` unless the app signs
/// browsers in with the library's cookie (the `cookies` feature): an app
/// that does not use cookies launches as before.
async fn a_release_build_launches_without_a_secret_key() {
    let database = TestDatabase::create(Setup::Sqlite).await;
    // A build with the feature needs the key, as documented.
    let env: &[(&str, &str)] = if cfg!(feature = "cookies") {
        &[
            ("ROCKET_PROFILE", "release"),
            (
                "ROCKET_SECRET_KEY",
                "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=",
            ),
        ]
    } else {
        &[("ROCKET_PROFILE", "release")]
    };
    let instance = Instance::launch(
        &database.url,
        Launch {
            env,
            ..Launch::default()
        },
    )
    .await;
    assert_eq!(publish(&instance.url, PUBLISH_KEY).await, 201);
    instance.kill().await;
}
