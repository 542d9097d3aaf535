//! Events: any JSON (S3 notifications, EventBridge, replays, schedules) gives objects or an
//! error, never a panic, in both functions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = sluice_loader::event::decode_key(s);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = sluice_loader::event::objects(&v);
    let _ = sluice_ingest::parse_event(&v);
});
