//! The ingest's reading of what an API sends: a page's cursor or next URL, `has_more`, its
//! records, the token response, the Link and rate-limit headers. Any bytes, never a panic; a
//! token error never quotes the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue};
use sluice_flatten::{InputFormat, RecordReader};
use sluice_ingest::http::{link_next, parse_token, rate_limit_wait};
use sluice_ingest::run::json_path_string;

fuzz_target!(|data: &[u8]| {
    let _ = json_path_string(data, "page_info.next_page_token");
    let _ = json_path_string(data, "next");
    let _ = json_path_string(data, "@odata.nextLink");
    let _ = json_path_string(data, "_links.next.href");
    let _ = sluice_ingest::json_path::json_path_bool(data, "has_more");
    let mut reader = RecordReader::new(data, InputFormat::path("items"));
    while let Ok(Some(_)) = reader.next_record() {}
    match parse_token(data) {
        Ok((_, ttl)) => assert!(ttl.as_secs() <= 86_400),
        Err(e) => {
            // A body with JSON punctuation (the message itself has none) never shows in it.
            if let Ok(s) = std::str::from_utf8(data)
                && s.len() >= 8
                && s.contains(['"', '{', '['])
            {
                assert!(!e.contains(s), "the error quotes the body");
            }
        }
    }
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.insert("link", v.clone());
        h.insert("retry-after", v.clone());
        h.insert("x-ratelimit-reset", v);
        let _ = link_next(&h);
        if let Some(wait) = rate_limit_wait(&h) {
            assert!(wait.as_secs() <= 300);
        }
    }
});
