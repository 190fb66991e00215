//! The SockJS URL router (the path after the prefix, and the method) on any
//! path. It never panics, and what it decides is consistent: a session
//! route names a session and transport that are segments of the path, a
//! preflight exactly for OPTIONS; one trailing slash changes nothing; a 405
//! lists methods that each do reach a route; a path not starting with `/`
//! is a 404.

#![no_main]

use actix_web::http::Method;
use libfuzzer_sys::fuzz_target;
use sigway_sockjs::inputs::{Route, route};

const METHODS: [&str; 6] = ["GET", "POST", "OPTIONS", "PUT", "DELETE", "HEAD"];

fuzz_target!(|input: &[u8]| {
    let Some((&choice, path)) = input.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(path) else {
        return;
    };
    let method = method(METHODS[usize::from(choice) % METHODS.len()]);
    let found = route(rest, &method);

    if !rest.is_empty() && !rest.starts_with('/') {
        assert_eq!(
            found,
            Route::NotFound,
            "a path not under the prefix: {rest:?}"
        );
    }
    if !rest.ends_with('/') {
        let slashed = format!("{rest}/");
        assert_eq!(
            route(&slashed, &method),
            found,
            "one trailing slash changes nothing"
        );
    }
    match &found {
        Route::Session {
            session,
            transport,
            preflight,
        } => {
            let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
            assert_eq!(
                segments.len(),
                4,
                "/<server>/<session>/<transport>: {rest:?}"
            );
            assert_eq!(segments[2], *session);
            assert!(
                !session.is_empty() && !session.contains('.'),
                "a valid session id"
            );
            assert!(
                !segments[1].is_empty() && !segments[1].contains('.'),
                "a valid server id"
            );
            assert!(!rest.ends_with("//"), "at most one trailing slash");
            assert_eq!(*preflight, method == Method::OPTIONS);
            // `XhrSend` names `xhr_send`, `EventSource` names `eventsource`...
            let named = format!("{transport:?}").to_lowercase();
            assert_eq!(named, segments[3].replace('_', ""), "the transport named");
        }
        Route::MethodNotAllowed(allow) => {
            let allowed: Vec<&str> = allow.split(", ").collect();
            assert!(
                !allowed.contains(&method.as_str()),
                "405 for an allowed method"
            );
            for other in allowed {
                let reached = route(rest, &self::method(other));
                assert!(
                    !matches!(reached, Route::MethodNotAllowed(_) | Route::NotFound),
                    "{other} is allowed on {rest:?} but reaches {reached:?}"
                );
            }
        }
        _ => {}
    }
});

fn method(name: &str) -> Method {
    match Method::from_bytes(name.as_bytes()) {
        Ok(method) => method,
        Err(error) => panic!("{name} is a method: {error}"),
    }
}
