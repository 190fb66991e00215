//! SockJS framing, pure and I/O-free: what goes on the wire and how client
//! payloads are read.
//!
//! Server to client, every transport carries the same frames (`o`, `h`,
//! `a[...]`, `c[code,"reason"]`); each transport only wraps them differently
//! (`Wrapping`). Strings inside frames are JSON-quoted the way sockjs-node
//! does it (`quote`): besides JSON's own escapes, characters that browsers
//! or proxies mangle are sent as lowercase `\uXXXX`. Client to server, the
//! body is a JSON array of strings (or, on the WebSocket, a single string).
//!
//! About 400 lines of production code, over the usual 350: building frames
//! and parsing payloads share the JSON string rules, and the property tests
//! below exercise quoting, framing, wrapping and parsing together, so they
//! stay in one file.

use std::fmt::Write as _;

use crate::error::SockjsError;

/// The open frame, first on every new session.
pub(crate) const OPEN: &str = "o";
/// The heartbeat frame.
pub(crate) const HEARTBEAT: &str = "h";

/// The xhr_streaming prelude: 2 KiB of `h` and a newline, so that browsers
/// start handing the response to the page.
pub(crate) fn xhr_streaming_prelude() -> String {
    let mut prelude = "h".repeat(2048);
    prelude.push('\n');
    prelude
}

/// `chunking_test`'s body: (delay before it in ms, chunk), as sockjs-node
/// writes it.
pub(crate) fn chunking_test_steps() -> [(u64, String); 7] {
    let h = || "h\n".to_string();
    [
        (0, h()),
        (1, format!("{}h\n", " ".repeat(2048))),
        (5, h()),
        (25, h()),
        (125, h()),
        (625, h()),
        (3125, h()),
    ]
}

/// Characters sockjs-node sends escaped besides JSON's mandatory ones (its
/// `utils.js` `escapable`): controls, invisible formatting marks, line and
/// paragraph separators and the specials block. Nothing else: the C1
/// controls, U+00AD or U+FEFF go out as they are, as in sockjs-node.
fn needs_unicode_escape(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f
        | 0x200c..=0x200f
        | 0x2028..=0x202f
        | 0x2060..=0x206f
        | 0xfff0..=0xffff
        // Outside the BMP, JavaScript strings hold surrogate pairs, which
        // sockjs-node escapes one by one.
        | 0x10000..)
}

fn push_unicode_escape(out: &mut String, unit: u32) {
    let _ = write!(out, "\\u{unit:04x}");
}

/// Appends `text` as a JSON string literal with SockJS escaping.
pub(crate) fn quote_into(out: &mut String, text: &str) {
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
#[cfg(test)]
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    quote_into(&mut out, text);
    out
}

/// `a["m1","m2"]`: a batch of messages.
pub(crate) fn messages<S: AsRef<str>>(batch: &[S]) -> String {
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
pub(crate) fn close(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    quote_into(&mut out, reason);
    out.push(']');
    out
}

/// The close frame for a layer error.
pub(crate) fn close_for(error: &SockjsError) -> String {
    let close = error.close();
    self::close(close.code, &close.reason)
}

/// How one HTTP transport wraps each frame in its response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wrapping {
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
    pub(crate) fn wrap(&self, frame: &str) -> String {
        match self {
            Wrapping::Newline => {
                let mut out = String::with_capacity(frame.len() + 1);
                out.push_str(frame);
                out.push('\n');
                out
            }
            Wrapping::EventSource => format!("data: {}\r\n\r\n", eventsource_escape(frame)),
            Wrapping::HtmlFile => {
                format!("<script>\np({});\n</script>\r\n", js_string(frame, true))
            }
            // `/**/` keeps a callback from starting the body (sockjs-node
            // since 0.3.10, against content-sniffing attacks).
            Wrapping::Jsonp(callback) => {
                format!("/**/{callback}({});\r\n", js_string(frame, false))
            }
        }
    }
}

/// sockjs-node's `escape_selected(frame, '\r\n\x00')`: `%`, CR, LF and NUL
/// percent-escaped. sockjs-client decodes eventsource data with
/// `decodeURI`-like unescaping, so a raw `%` would break it ("50% off").
pub(crate) fn eventsource_escape(frame: &str) -> std::borrow::Cow<'_, str> {
    if !frame.contains(['%', '\r', '\n', '\0']) {
        return std::borrow::Cow::Borrowed(frame);
    }
    let mut out = String::with_capacity(frame.len() + 8);
    for c in frame.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A frame as a JavaScript string literal (what `JSON.stringify` gives).
/// Inside an HTML page `<` is escaped too, so that a message can never end
/// the script element it travels in (sockjs-node does not: a message
/// holding `</script>` breaks out of its htmlfile page there).
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
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' if in_html => out.push_str("\\u003c"),
            c if (c as u32) < 0x20 => push_unicode_escape(&mut out, c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The htmlfile page head: it hooks the parent's callback, padded (as
/// sockjs-node pads its template) so that browsers render the following
/// script tags as they come.
pub(crate) fn htmlfile_prelude(callback: &str) -> String {
    const HEAD: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{{ callback }};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;
    // sockjs-node pads the template, placeholder included, to 1037
    // characters before putting the callback in.
    let padding = (1024 + 13usize).saturating_sub(HEAD.len());
    let mut page = HEAD.replace("{{ callback }}", callback);
    page.push_str(&" ".repeat(padding));
    page.push_str("\r\n\r\n");
    page
}

/// Longest jsonp callback sockjs-node accepts (htmlfile has no limit).
pub(crate) const MAX_JSONP_CALLBACK_LEN: usize = 32;

/// Checks a jsonp/htmlfile callback name (the `c` or `callback` query
/// parameter, all its values): it is pasted into JavaScript, so only
/// letters, digits, `-`, `_` and `.` are allowed, as in sockjs-node. An
/// empty name passes there too; a repeated parameter does not (Node joins
/// the values with a comma).
pub(crate) fn validate_callback(
    values: &[String],
    max_len: Option<usize>,
) -> Result<&str, SockjsError> {
    let callback = match values {
        [] => return Err(SockjsError::CallbackRequired),
        [one] => one.as_str(),
        _ => return Err(SockjsError::InvalidCallback),
    };
    let valid = max_len.is_none_or(|max| callback.len() <= max)
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

/// JSON text as sockjs-node's `JSON.parse` reads it, except that lone
/// surrogate escapes (`"\ud800"`), which no UTF-8 string can hold, become
/// U+FFFD instead of failing the whole payload.
fn parse_json(text: &str) -> Result<serde_json::Value, ()> {
    let repaired = replace_lone_surrogates(text);
    serde_json::from_str(&repaired).map_err(|_| ())
}

/// `\uD8xx` not followed by `\uDCxx` (and a `\uDCxx` not preceded by a
/// high one) replaced by `\ufffd`. Backslashes only occur inside JSON
/// strings, so escapes are found without tracking string boundaries.
fn replace_lone_surrogates(text: &str) -> std::borrow::Cow<'_, str> {
    fn unit_at(bytes: &[u8], at: usize) -> Option<u16> {
        let hex = bytes.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let bytes = text.as_bytes();
    if !text.contains("\\u") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(bytes, i) else {
            // Another escape (or `\\`): skip it whole.
            i += 2;
            continue;
        };
        let lone = match unit {
            0xd800..=0xdbff => match unit_at(bytes, i + 6) {
                Some(0xdc00..=0xdfff) => {
                    i += 12;
                    continue;
                }
                _ => true,
            },
            0xdc00..=0xdfff => true,
            _ => false,
        };
        if lone {
            out.push_str(&text[copied..i]);
            out.push_str("\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// The elements of a decoded payload, which must be a JSON array.
fn array_messages(value: serde_json::Value) -> Result<Vec<String>, SockjsError> {
    match value {
        serde_json::Value::Array(items) => Ok(items.into_iter().map(into_message).collect()),
        _ => Err(SockjsError::PayloadExpected),
    }
}

/// The media type of a `Content-Type` value as sockjs-node compares it:
/// what comes before the first `;`, untrimmed, case-sensitive.
fn media_type(content_type: Option<&str>) -> &str {
    content_type.unwrap_or("").split(';').next().unwrap_or("")
}

/// Decodes an xhr_send payload, a JSON array of messages, as sockjs-node's
/// `expect_xhr` + `xhr_send` do: the body is read as UTF-8 (invalid bytes
/// become U+FFFD) and only some content types are read at all.
pub(crate) fn parse_xhr_send(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<String>, SockjsError> {
    let readable = matches!(
        media_type(content_type),
        "text/plain" | "T" | "application/json" | "application/xml" | "" | "text/xml"
    );
    let text = String::from_utf8_lossy(body);
    if !readable || text.is_empty() {
        return Err(SockjsError::PayloadExpected);
    }
    array_messages(parse_json(&text).map_err(|_| SockjsError::BrokenJson)?)
}

/// Decodes a jsonp_send payload as sockjs-node's `expect_form` +
/// `jsonp_send` do: a form whose `d` field holds the JSON array (a
/// repeated `d` gives its values as the messages), or a raw `text/plain`
/// body; a JSON string holding JSON is decoded once more.
pub(crate) fn parse_jsonp_send(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<String>, SockjsError> {
    let text = String::from_utf8_lossy(body);
    let payload = match media_type(content_type) {
        "application/x-www-form-urlencoded" => {
            let mut fields: Vec<String> =
                serde_urlencoded::from_str::<Vec<(String, String)>>(&text)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(key, value)| (key == "d").then_some(value))
                    .collect();
            match fields.len() {
                0 => return Err(SockjsError::PayloadExpected),
                1 => serde_json::Value::String(fields.remove(0)),
                _ => serde_json::Value::Array(
                    fields.into_iter().map(serde_json::Value::String).collect(),
                ),
            }
        }
        "text/plain" | "" => {
            if text.is_empty() {
                return Err(SockjsError::PayloadExpected);
            }
            parse_json(&text).map_err(|_| SockjsError::BrokenJson)?
        }
        _ => return Err(SockjsError::PayloadExpected),
    };
    let payload = match payload {
        serde_json::Value::String(inner) if !inner.is_empty() => {
            parse_json(&inner).map_err(|_| SockjsError::BrokenJson)?
        }
        other => other,
    };
    array_messages(payload)
}

/// Decodes a frame from the framed WebSocket: a JSON array of messages or a
/// single JSON value. An empty frame carries nothing.
pub(crate) fn parse_websocket_frame(text: &str) -> Result<Vec<String>, SockjsError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let value = parse_json(text).map_err(|_| SockjsError::BrokenFraming)?;
    Ok(match value {
        serde_json::Value::Array(items) => items.into_iter().map(into_message).collect(),
        other => vec![into_message(other)],
    })
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
        assert_eq!(quote("\u{1f}"), r#""\u001f""#);
        // sockjs-node leaves DEL, the C1 controls and U+00AD alone.
        assert_eq!(quote("\u{7f}\u{85}\u{ad}"), "\"\u{7f}\u{85}\u{ad}\"");
        assert_eq!(quote("\"\\/"), r#""\"\\/""#);
    }

    #[test]
    fn unsafe_unicode_is_escaped_and_the_rest_kept() {
        assert_eq!(
            quote("\u{2028}\u{200c}\u{feff}\u{fff0}\u{ffff}"),
            "\"\\u2028\\u200c\u{feff}\\ufff0\\uffff\""
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
            Wrapping::EventSource.wrap("a[\"50% off\r\n\0\"]"),
            "data: a[\"50%25 off%0D%0A%00\"]\r\n\r\n"
        );
        assert_eq!(
            Wrapping::HtmlFile.wrap(r#"a["x"]"#),
            "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n"
        );
        assert_eq!(
            Wrapping::Jsonp("callback".into()).wrap(r#"c[3000,"Go away!"]"#),
            "/**/callback(\"c[3000,\\\"Go away!\\\"]\");\r\n"
        );
    }

    #[test]
    fn htmlfile_cannot_close_its_script_element() {
        let wrapped = Wrapping::HtmlFile.wrap(&messages(&["</script><b>"]));
        assert!(!wrapped[8..wrapped.len() - 12].contains('<'), "{wrapped}");
    }

    #[test]
    fn htmlfile_prelude_is_padded_as_sockjs_node_pads_it() {
        let page = htmlfile_prelude("callback");
        // 1037 characters with the 14-character placeholder, then CRLFCRLF.
        assert_eq!(page.len(), 1037 - 14 + "callback".len() + 4);
        assert!(page.contains("var c = parent.callback;"));
        assert!(page.ends_with("  \r\n\r\n"));
    }

    #[test]
    fn jsonp_frames_start_with_a_comment() {
        assert_eq!(Wrapping::Jsonp("cb".into()).wrap("o"), "/**/cb(\"o\");\r\n");
    }

    #[test]
    fn callbacks_are_required_and_restricted() {
        let one = |s: &str| vec![s.to_string()];
        assert_eq!(
            validate_callback(&[], None),
            Err(SockjsError::CallbackRequired)
        );
        // An empty callback passes, as in sockjs-node.
        assert_eq!(validate_callback(&one(""), None), Ok(""));
        assert_eq!(validate_callback(&one("_jp.abc-1"), None), Ok("_jp.abc-1"));
        for bad in ["a(b)", "й", "a:b", "a,b"] {
            assert_eq!(
                validate_callback(&one(bad), None),
                Err(SockjsError::InvalidCallback),
                "{bad}"
            );
        }
        assert_eq!(
            validate_callback(&["a".into(), "b".into()], None),
            Err(SockjsError::InvalidCallback)
        );
        let long = "a".repeat(MAX_JSONP_CALLBACK_LEN + 1);
        assert_eq!(
            validate_callback(&one(&long), Some(MAX_JSONP_CALLBACK_LEN)),
            Err(SockjsError::InvalidCallback)
        );
        assert!(validate_callback(&one(&long), None).is_ok());
    }

    #[test]
    fn xhr_send_bodies_are_arrays_of_messages() {
        let parse = |body: &[u8]| parse_xhr_send(None, body);
        assert_eq!(parse(br#"["a","b"]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(parse(b""), Err(SockjsError::PayloadExpected));
        assert_eq!(parse(br#"["x"#), Err(SockjsError::BrokenJson));
        assert_eq!(parse(br#""x""#), Err(SockjsError::PayloadExpected));
        assert_eq!(parse(b"null"), Err(SockjsError::PayloadExpected));
        assert_eq!(
            parse(br#"[1,{"k":2}]"#),
            Ok(vec!["1".into(), r#"{"k":2}"#.into()])
        );
        assert_eq!(parse(b"[]"), Ok(vec![]));
        // Invalid UTF-8 is read as U+FFFD, as Node's Buffer#toString does.
        assert_eq!(parse(b"[\"a\xffb\"]"), Ok(vec!["a\u{fffd}b".into()]));
    }

    #[test]
    fn xhr_send_reads_only_sockjs_node_content_types() {
        for readable in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "T",
            "application/json",
            "text/xml",
        ] {
            assert_eq!(
                parse_xhr_send(Some(readable), b"[\"x\"]"),
                Ok(vec!["x".into()]),
                "{readable}"
            );
        }
        for unread in [
            "application/x-www-form-urlencoded",
            "Text/Plain",
            " text/plain",
        ] {
            assert_eq!(
                parse_xhr_send(Some(unread), b"[\"x\"]"),
                Err(SockjsError::PayloadExpected),
                "{unread}"
            );
        }
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert_eq!(
            parse_xhr_send(None, br#"["\ud800","x\udfffy","\ud83d\ude00","\\ud800"]"#),
            Ok(vec![
                "\u{fffd}".into(),
                "x\u{fffd}y".into(),
                "😀".into(),
                "\\ud800".into()
            ])
        );
        assert_eq!(
            parse_websocket_frame(r#""\ude00\ud83d""#),
            Ok(vec!["\u{fffd}\u{fffd}".into()])
        );
    }

    #[test]
    fn jsonp_send_takes_forms_and_raw_bodies_as_sockjs_node_does() {
        let form = Some("application/x-www-form-urlencoded");
        let parse = |ct: Option<&str>, body: &[u8]| parse_jsonp_send(ct, body);
        assert_eq!(parse(form, b"d=%5B%22x%22%5D"), Ok(vec!["x".into()]));
        assert_eq!(parse(form, b"a=1&d=%5B%22b%22%5D"), Ok(vec!["b".into()]));
        assert_eq!(parse(form, b""), Err(SockjsError::PayloadExpected));
        assert_eq!(parse(form, b"d="), Err(SockjsError::PayloadExpected));
        assert_eq!(parse(form, b"p=p"), Err(SockjsError::PayloadExpected));
        assert_eq!(parse(form, b"d=%5B%22x"), Err(SockjsError::BrokenJson));
        // A repeated field: its values are the messages.
        assert_eq!(parse(form, b"d=a&d=b"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(parse(Some("text/plain"), br#"["y"]"#), Ok(vec!["y".into()]));
        assert_eq!(parse(None, br#"["z"]"#), Ok(vec!["z".into()]));
        // A JSON string holding JSON is decoded again.
        assert_eq!(parse(None, br#""[\"double\"]""#), Ok(vec!["double".into()]));
        assert_eq!(
            parse(Some("application/json"), br#"["j"]"#),
            Err(SockjsError::PayloadExpected)
        );
        assert_eq!(parse(None, b""), Err(SockjsError::PayloadExpected));
    }

    #[test]
    fn websocket_frames_are_arrays_or_single_values() {
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
    fn chunking_test_is_seven_chunks_over_about_four_seconds() {
        let steps = chunking_test_steps();
        assert_eq!(steps.iter().map(|(ms, _)| ms).sum::<u64>(), 3906);
        assert_eq!(steps[1].1.len(), 2048 + 2);
        assert!(steps.iter().all(|(_, chunk)| chunk.ends_with("h\n")));
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
            let _ = parse_xhr_send(None, &body);
            let _ = parse_jsonp_send(Some("application/x-www-form-urlencoded"), &body);
            let _ = parse_jsonp_send(None, &body);
            let _ = String::from_utf8(body).map(|text| parse_websocket_frame(&text));
        }
    }
}
