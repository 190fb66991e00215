//! SockJS framing, pure and I/O-free: what goes on the wire and how client
//! payloads are read.
//!
//! Server to client, every transport carries the same frames (`o`, `h`,
//! `a[...]`, `c[code,"reason"]`); each transport only wraps them differently
//! ([`Wrapping`]). Strings inside frames are JSON-quoted the way sockjs-node
//! does it ([`quote`]): besides JSON's own escapes, characters that browsers
//! or proxies mangle are sent as lowercase `\uXXXX`. Client to server, the
//! body is a JSON array of strings (or, on the WebSocket, a single string).

use std::fmt::Write as _;

use crate::error::SockjsError;

/// The open frame, first on every new session.
pub const OPEN: &str = "o";
/// The heartbeat frame.
pub const HEARTBEAT: &str = "h";

/// The xhr_streaming prelude: 2 KiB of `h` and a newline, so that browsers
/// start handing the response to the page.
pub fn xhr_streaming_prelude() -> String {
    let mut prelude = "h".repeat(2048);
    prelude.push('\n');
    prelude
}

/// Characters sockjs-node sends escaped besides JSON's mandatory ones
/// (its `utils.js` `escapable`): C1 controls, invisible formatting marks,
/// line/paragraph separators, the BOM and the specials block.
fn needs_unicode_escape(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f
        | 0x7f..=0x9f
        | 0xad
        | 0x600..=0x604
        | 0x70f
        | 0x17b4
        | 0x17b5
        | 0x200c..=0x200f
        | 0x2028..=0x202f
        | 0x2060..=0x206f
        | 0xfeff
        | 0xfff0..=0xffff
        // Outside the BMP, JavaScript strings hold surrogate pairs, which
        // sockjs-node escapes one by one.
        | 0x10000..)
}

fn push_unicode_escape(out: &mut String, unit: u32) {
    let _ = write!(out, "\\u{unit:04x}");
}

/// Appends `text` as a JSON string literal with SockJS escaping.
pub fn quote_into(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if needs_unicode_escape(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unicode_escape(out, u32::from(*unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `text` as a JSON string literal with SockJS escaping.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    quote_into(&mut out, text);
    out
}

/// `a["m1","m2"]`: a batch of messages.
pub fn messages<S: AsRef<str>>(batch: &[S]) -> String {
    let mut out =
        String::with_capacity(3 + batch.iter().map(|m| m.as_ref().len() + 3).sum::<usize>());
    out.push_str("a[");
    for (i, message) in batch.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote_into(&mut out, message.as_ref());
    }
    out.push(']');
    out
}

/// `c[code,"reason"]`: the session is closed.
pub fn close(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    quote_into(&mut out, reason);
    out.push(']');
    out
}

/// The close frame for a layer error.
pub fn close_for(error: &SockjsError) -> String {
    let close = error.close();
    self::close(close.code, &close.reason)
}

/// How one HTTP transport wraps each frame in its response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wrapping {
    /// xhr and xhr_streaming: the frame and a newline.
    Newline,
    /// eventsource: `data: <frame>\r\n\r\n`.
    EventSource,
    /// htmlfile: a script tag calling `p("<frame>")`.
    HtmlFile,
    /// jsonp: `<callback>("<frame>");\r\n`.
    Jsonp(String),
}

impl Wrapping {
    pub fn wrap(&self, frame: &str) -> String {
        match self {
            Wrapping::Newline => {
                let mut out = String::with_capacity(frame.len() + 1);
                out.push_str(frame);
                out.push('\n');
                out
            }
            Wrapping::EventSource => format!("data: {frame}\r\n\r\n"),
            Wrapping::HtmlFile => {
                format!("<script>\np({});\n</script>\r\n", js_string(frame, true))
            }
            Wrapping::Jsonp(callback) => format!("{callback}({});\r\n", js_string(frame, false)),
        }
    }
}

/// A frame as a JavaScript string literal (what `JSON.stringify` gives).
/// Inside an HTML page `<` is escaped too, so that a message can never end
/// the script element it travels in.
fn js_string(frame: &str, in_html: bool) -> String {
    let mut out = String::with_capacity(frame.len() + 2);
    out.push('"');
    for c in frame.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' if in_html => out.push_str("\\u003c"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                push_unicode_escape(&mut out, c as u32)
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The htmlfile page head: it hooks the parent's callback, padded past
/// 1 KiB so that browsers render the following script tags as they come.
pub fn htmlfile_prelude(callback: &str) -> String {
    let mut page = format!(
        r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"#
    );
    let padding = 1025usize.saturating_sub(page.len());
    page.push_str(&" ".repeat(padding));
    page.push_str("\r\n\r\n");
    page
}

/// Longest callback name accepted (sockjs-client sends `_jp.` and a few
/// random characters).
pub const MAX_CALLBACK_LEN: usize = 256;

/// Checks a jsonp/htmlfile callback name: it is pasted into JavaScript, so
/// only identifier characters and dots are allowed.
pub fn validate_callback(callback: Option<&str>) -> Result<&str, SockjsError> {
    let callback = callback.ok_or(SockjsError::CallbackRequired)?;
    if callback.is_empty() {
        return Err(SockjsError::CallbackRequired);
    }
    let valid = callback.len() <= MAX_CALLBACK_LEN
        && callback
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(callback)
    } else {
        Err(SockjsError::InvalidCallback)
    }
}

/// One message from a decoded client payload: strings stay as they are,
/// any other JSON value is passed on as its JSON text (sockjs-node's
/// `'' + value` for numbers and the like).
fn into_message(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Decodes an xhr_send / jsonp_send payload: a JSON array of messages.
pub fn parse_send_body(body: &[u8]) -> Result<Vec<String>, SockjsError> {
    if body.is_empty() {
        return Err(SockjsError::PayloadExpected);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| SockjsError::BrokenJson)?;
    match value {
        serde_json::Value::Array(items) => Ok(items.into_iter().map(into_message).collect()),
        _ => Err(SockjsError::PayloadExpected),
    }
}

/// Decodes a frame from the framed WebSocket: a JSON array of messages or a
/// single JSON string. An empty frame carries nothing.
pub fn parse_websocket_frame(text: &str) -> Result<Vec<String>, SockjsError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| SockjsError::BrokenFraming)?;
    Ok(match value {
        serde_json::Value::Array(items) => items.into_iter().map(into_message).collect(),
        other => vec![into_message(other)],
    })
}

/// The `d` field of an `application/x-www-form-urlencoded` jsonp_send body.
pub fn form_field_d(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find_map(|(key, value)| (key == "d").then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_match_sockjs_node() {
        assert_eq!(messages(&["a", "b"]), r#"a["a","b"]"#);
        assert_eq!(messages::<&str>(&[]), "a[]");
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(
            close(2010, "Another connection still open"),
            r#"c[2010,"Another connection still open"]"#
        );
    }

    #[test]
    fn control_characters_use_json_short_forms_and_lowercase_hex() {
        assert_eq!(quote("  \u{0}\n\r "), r#""  \u0000\n\r ""#);
        assert_eq!(quote("\u{1f}\u{7f}\u{ad}"), r#""\u001f\u007f\u00ad""#);
        assert_eq!(quote("\"\\/"), r#""\"\\/""#);
    }

    #[test]
    fn unsafe_unicode_is_escaped_and_the_rest_kept() {
        assert_eq!(
            quote("\u{2028}\u{200c}\u{feff}\u{fff0}\u{ffff}"),
            r#""\u2028\u200c\ufeff\ufff0\uffff""#
        );
        assert_eq!(quote("héllo ж 中"), "\"héllo ж 中\"");
        assert_eq!(quote("\u{2000}\u{2030}"), "\"\u{2000}\u{2030}\"");
    }

    #[test]
    fn astral_characters_become_surrogate_pairs() {
        assert_eq!(quote("😀"), r#""\ud83d\ude00""#);
    }

    #[test]
    fn protocol_suite_server_killer_string_is_escaped_exactly() {
        // sockjs-protocol 0.3.3 `escapable_by_server`, from U+00FF up.
        let killer: String = (0xffu32..0x10000)
            .filter_map(char::from_u32)
            .filter(|c| {
                matches!(*c as u32, 0x00..=0x1f | 0x200c..=0x200f | 0x2028..=0x202f
                    | 0x2060..=0x206f | 0xfff0..=0xffff)
            })
            .collect();
        let expected: String = killer
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        assert_eq!(quote(&killer), format!("\"{expected}\""));
    }

    #[test]
    fn wrappings_follow_each_transport() {
        assert_eq!(Wrapping::Newline.wrap("o"), "o\n");
        assert_eq!(Wrapping::EventSource.wrap("o"), "data: o\r\n\r\n");
        assert_eq!(
            Wrapping::HtmlFile.wrap(r#"a["x"]"#),
            "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n"
        );
        assert_eq!(
            Wrapping::Jsonp("callback".into()).wrap(r#"c[3000,"Go away!"]"#),
            "callback(\"c[3000,\\\"Go away!\\\"]\");\r\n"
        );
    }

    #[test]
    fn htmlfile_cannot_close_its_script_element() {
        let wrapped = Wrapping::HtmlFile.wrap(&messages(&["</script><b>"]));
        assert!(!wrapped[8..wrapped.len() - 12].contains('<'), "{wrapped}");
    }

    #[test]
    fn htmlfile_prelude_is_padded_past_one_kib() {
        let page = htmlfile_prelude("callback");
        assert!(page.len() > 1024);
        assert!(page.contains("var c = parent.callback;"));
        assert!(page.ends_with("\r\n\r\n"));
    }

    #[test]
    fn callbacks_are_required_and_restricted() {
        assert_eq!(validate_callback(None), Err(SockjsError::CallbackRequired));
        assert_eq!(
            validate_callback(Some("")),
            Err(SockjsError::CallbackRequired)
        );
        assert_eq!(validate_callback(Some("_jp.abc-1")), Ok("_jp.abc-1"));
        assert_eq!(
            validate_callback(Some("a(b)")),
            Err(SockjsError::InvalidCallback)
        );
        assert_eq!(
            validate_callback(Some("й")),
            Err(SockjsError::InvalidCallback)
        );
        let long = "a".repeat(MAX_CALLBACK_LEN + 1);
        assert_eq!(
            validate_callback(Some(&long)),
            Err(SockjsError::InvalidCallback)
        );
    }

    #[test]
    fn send_bodies_are_arrays_of_messages() {
        assert_eq!(
            parse_send_body(br#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_send_body(b""), Err(SockjsError::PayloadExpected));
        assert_eq!(parse_send_body(br#"["x"#), Err(SockjsError::BrokenJson));
        assert_eq!(
            parse_send_body(br#""x""#),
            Err(SockjsError::PayloadExpected)
        );
        assert_eq!(
            parse_send_body(br#"[1,{"k":2}]"#),
            Ok(vec!["1".into(), r#"{"k":2}"#.into()])
        );
        assert_eq!(parse_send_body(b"[]"), Ok(vec![]));
    }

    #[test]
    fn websocket_frames_are_arrays_or_single_strings() {
        assert_eq!(parse_websocket_frame(""), Ok(vec![]));
        assert_eq!(
            parse_websocket_frame(r#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_websocket_frame(r#""a""#), Ok(vec!["a".into()]));
        assert_eq!(
            parse_websocket_frame(r#"["a"#),
            Err(SockjsError::BrokenFraming)
        );
    }

    #[test]
    fn form_bodies_yield_the_d_field() {
        assert_eq!(
            form_field_d(b"d=%5B%22x%22%5D").as_deref(),
            Some(r#"["x"]"#)
        );
        assert_eq!(form_field_d(b"p=p"), None);
        assert_eq!(form_field_d(b"d=").as_deref(), Some(""));
        assert_eq!(form_field_d(b"a=1&d=%22b%22").as_deref(), Some(r#""b""#));
    }

    proptest! {
        #[test]
        fn any_string_survives_quoting(text in any::<String>()) {
            let quoted = quote(&text);
            let decoded: String = serde_json::from_str(&quoted).expect("valid JSON");
            prop_assert_eq!(decoded, text);
        }

        #[test]
        fn quoted_strings_hold_no_unsafe_character(text in any::<String>()) {
            let quoted = quote(&text);
            prop_assert!(quoted.chars().all(|c| !needs_unicode_escape(c)));
        }

        #[test]
        fn any_batch_survives_framing(batch in proptest::collection::vec(any::<String>(), 0..8)) {
            let frame = messages(&batch);
            prop_assert!(frame.starts_with('a'));
            let decoded: Vec<String> = serde_json::from_str(&frame[1..]).expect("valid JSON");
            prop_assert_eq!(decoded, batch);
        }

        #[test]
        fn wrapped_frames_decode_back(text in any::<String>()) {
            let frame = messages(&[text]);
            for wrapping in [Wrapping::HtmlFile, Wrapping::Jsonp("cb".into())] {
                let wrapped = wrapping.wrap(&frame);
                let start = wrapped.find('(').expect("call") + 1;
                let end = wrapped.rfind(')').expect("call");
                let decoded: String = serde_json::from_str(&wrapped[start..end]).expect("valid JSON");
                prop_assert_eq!(&decoded, &frame);
            }
        }

        #[test]
        fn parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_send_body(&body);
            let _ = form_field_d(&body);
        }
    }
}
