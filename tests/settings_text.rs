//! `Settings::from_file_text`, the loader the `settings` fuzz target drives
//! (fuzz/fuzz_targets/settings.rs), reads a settings file's text exactly as
//! start-up reads the file itself: checked here against `load_with_env` on
//! the same text written to a file, with an environment that sets nothing.

use std::path::Path;

use sigway::config::{Overrides, Settings, SettingsFile};

/// An environment source no variable of this process matches.
fn no_environment() -> config::Environment {
    config::Environment::with_prefix("SIGWAY_SETTINGS_TEXT_TEST_UNSET")
}

fn loaded_from_file(dir: &Path, name: &str, text: &str) -> Settings {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write settings file");
    let overrides = Overrides {
        config_file: Some(path),
        ..Overrides::default()
    };
    Settings::load_with_env(&overrides, no_environment()).expect("settings load")
}

#[test]
fn toml_text_reads_as_the_file_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "port = 9123\n[sigver]\nheartbeat_interval_ms = 777\n[sockjs]\nprefix = \"/x\"\n";
    let from_text = Settings::from_file_text(text, SettingsFile::Toml).expect("toml text");
    assert_eq!(from_text.port, 9123);
    assert_eq!(from_text.sigver.heartbeat_interval_ms, 777);
    assert_eq!(from_text, loaded_from_file(dir.path(), "s.toml", text));

    let defaults = std::fs::read_to_string("config/default.toml").expect("default.toml");
    let from_defaults = Settings::from_file_text(&defaults, SettingsFile::Toml).expect("defaults");
    assert_eq!(from_defaults, Settings::default());
}

#[test]
fn conf_json_text_reads_as_the_file_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = r#"{ "Port": 1111, "TLS": false, "Cert": "c.pem", "Key": "k.pem" }"#;
    let from_text = Settings::from_file_text(text, SettingsFile::ConfJson).expect("conf.json");
    assert_eq!(from_text.port, 1111);
    assert_eq!(from_text.tls.enabled, Some(false));
    assert_eq!(from_text, loaded_from_file(dir.path(), "conf.json", text));
}

#[test]
fn bad_text_is_an_error_not_a_panic() {
    for (text, kind) in [
        ("port = \"x\"", SettingsFile::Toml),
        ("nope = 1", SettingsFile::Toml),
        ("[limits", SettingsFile::Toml),
        (r#"{"Port": 70000}"#, SettingsFile::ConfJson),
        (r#"{"Other": 1}"#, SettingsFile::ConfJson),
        ("{", SettingsFile::ConfJson),
    ] {
        assert!(
            Settings::from_file_text(text, kind).is_err(),
            "{text:?} should be refused"
        );
    }
}
