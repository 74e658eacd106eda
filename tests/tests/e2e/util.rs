//! Assertions shared by the topic modules.

use oca_tests::Resp;

/// A JSON error response `{"error": code, "message": …}` with this status.
pub fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: status (body {:?})", r.text());
    let j = r.json();
    assert_eq!(j["error"], code, "{what}: error code in {j}");
    assert!(j["message"].is_string(), "{what}: message in {j}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{what}: content-type"
    );
}

/// 403 with `{"error":"forbidden",…}` and CORS, as every refused token gets.
pub fn assert_forbidden(r: &Resp, what: &str) {
    assert_error(r, 403, "forbidden", what);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "{what}: CORS on 403"
    );
}

/// The headers every object response (200/206) carries.
pub fn assert_object_headers(r: &Resp, data: &[u8], what: &str) {
    assert_eq!(
        r.header("etag"),
        Some(oca_tests::etag_of(data).as_str()),
        "{what}: ETag = first 16 bytes of SHA-256, hex, quoted"
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable"),
        "{what}: Cache-Control"
    );
    assert_eq!(
        r.header("accept-ranges"),
        Some("bytes"),
        "{what}: Accept-Ranges"
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "{what}: CORS"
    );
    let expose = r.must("access-control-expose-headers").to_ascii_lowercase();
    assert!(
        expose.contains("content-range"),
        "{what}: Content-Range must be exposed to browser players: {expose}"
    );
    let lm = r.must("last-modified");
    assert!(
        httpdate::parse_http_date(lm).is_ok(),
        "{what}: Last-Modified {lm:?} is an HTTP date"
    );
}
