//! The settings file readers (sigway TOML and videre-server's `conf.json`)
//! on any text, from bytes (no file is read). They never panic; settings
//! they accept are written back as TOML and read again unchanged; and the
//! start-up check (`validate`) answers without panicking whenever it would
//! not open TLS files the text names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigway::config::{Settings, SettingsFile};

fuzz_target!(|input: &[u8]| {
    let Some((&choice, text)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let kind = if choice % 2 == 0 {
        SettingsFile::Toml
    } else {
        SettingsFile::ConfJson
    };
    let Ok(settings) = Settings::from_file_text(text, kind) else {
        return;
    };
    // TOML integers are i64: a larger u64 (read from a string) cannot be
    // written back, which is TOML's limit, not ours.
    if let Ok(toml) = toml::to_string(&settings) {
        match Settings::from_file_text(&toml, SettingsFile::Toml) {
            Ok(again) => assert_eq!(again, settings, "settings survive TOML:\n{toml}"),
            Err(error) => panic!("settings written as TOML are refused: {error}\n{toml}"),
        }
    }
    if !matches!(settings.tls_files(), Ok(Some(_))) {
        let _ = settings.validate();
    }
});
