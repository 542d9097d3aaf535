//! The events the loader accepts: S3 notifications, S3 "Object Created" through EventBridge, and
//! a direct replay payload; each gives one or more objects to load.
//!
//! ```
//! use sluice_loader::event::{objects, decode_key};
//!
//! let replay = serde_json::json!({"bucket": "lake", "key": "raw/hotmart-sales/a b.csv"});
//! assert_eq!(objects(&replay).unwrap()[0].key, "raw/hotmart-sales/a b.csv");  // taken as is
//! // S3 notification keys are form-encoded: `+` is a space, `%2B` a plus.
//! assert_eq!(decode_key("raw/x/a+b%2Bc%C3%A9.csv").unwrap(), "raw/x/a b+cé.csv");
//! ```

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::S3Event;
use serde::Deserialize;
use serde_json::Value;

/// One object to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sequencer: Option<String>,
    /// When the event says the object was written.
    pub event_time: Option<jiff::Timestamp>,
}

/// The event is not one the loader understands.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(
        "unrecognised event: expected an S3 notification (Records[].s3), an EventBridge \"Object Created\" event or {{\"bucket\", \"key\"}}"
    )]
    Unknown,
    #[error("malformed {kind} event: {message}")]
    Malformed { kind: &'static str, message: String },
    #[error("object key {key:?} is not valid percent-encoded UTF-8")]
    BadKey { key: String },
}

/// Decodes an S3 notification key (`application/x-www-form-urlencoded`): `+` is a space and
/// `%XX` are UTF-8 bytes.
pub fn decode_key(encoded: &str) -> Result<String, EventError> {
    let plus_as_space = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| EventError::BadKey {
            key: encoded.to_owned(),
        })
}

#[derive(Debug, Deserialize)]
struct Replay {
    bucket: String,
    key: String,
    #[serde(default)]
    version_id: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct EbDetail {
    bucket: EbBucket,
    object: EbObject,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct EbBucket {
    name: String,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct EbObject {
    key: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

fn malformed(kind: &'static str, e: impl std::fmt::Display) -> EventError {
    EventError::Malformed {
        kind,
        message: e.to_string(),
    }
}

fn from_nanos(n: Option<i64>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_nanosecond(i128::from(n?)).ok()
}

/// The objects an event names, in event order. Records for other event kinds (removals) are
/// left out; keys are decoded.
pub fn objects(event: &Value) -> Result<Vec<ObjectRef>, EventError> {
    if event.get("Records").is_some() {
        return s3_notification(event);
    }
    if event.get("detail-type").is_some() {
        return eventbridge(event).map(|o| vec![o]);
    }
    if event.get("bucket").is_some() && event.get("key").is_some() {
        let r: Replay =
            serde_json::from_value(event.clone()).map_err(|e| malformed("replay", e))?;
        return Ok(vec![ObjectRef {
            bucket: r.bucket,
            key: r.key,
            version_id: r.version_id,
            ..ObjectRef::default()
        }]);
    }
    Err(EventError::Unknown)
}

/// The created objects of an S3 notification (other event kinds are passed over).
fn s3_notification(event: &Value) -> Result<Vec<ObjectRef>, EventError> {
    let ev: S3Event = serde_json::from_value(event.clone()).map_err(|e| malformed("S3", e))?;
    let mut out = Vec::new();
    for r in ev.records {
        if r.event_name
            .as_deref()
            .is_some_and(|n| !n.contains("ObjectCreated"))
        {
            continue;
        }
        let o = r.s3.object;
        let key = o
            .key
            .ok_or_else(|| malformed("S3", "a record has no s3.object.key"))?;
        let bucket = r.s3.bucket.name;
        out.push(ObjectRef {
            bucket: bucket.ok_or_else(|| malformed("S3", "a record has no s3.bucket.name"))?,
            key: decode_key(&key)?,
            version_id: o.version_id.filter(|v| !v.is_empty() && v != "null"),
            etag: o.e_tag.filter(|e| !e.is_empty()),
            sequencer: o.sequencer,
            event_time: from_nanos(r.event_time.timestamp_nanos_opt()),
        });
    }
    Ok(out)
}

/// The object of an EventBridge "Object Created" event.
fn eventbridge(event: &Value) -> Result<ObjectRef, EventError> {
    let ev: EventBridgeEvent<EbDetail> =
        serde_json::from_value(event.clone()).map_err(|e| malformed("EventBridge", e))?;
    if ev.source != "aws.s3" || ev.detail_type != "Object Created" {
        return Err(malformed(
            "EventBridge",
            format!(
                "source {:?}, detail-type {:?}: expected aws.s3 \"Object Created\"",
                ev.source, ev.detail_type
            ),
        ));
    }
    let o = ev.detail.object;
    Ok(ObjectRef {
        bucket: ev.detail.bucket.name,
        // Encoded like the S3 notification's key.
        key: decode_key(&o.key)?,
        version_id: o.version_id.filter(|v| !v.is_empty() && v != "null"),
        etag: o.etag,
        sequencer: o.sequencer,
        event_time: from_nanos(ev.time.and_then(|t| t.timestamp_nanos_opt())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_form_decoded() {
        for (enc, dec) in [
            ("raw/x/a+b.csv", "raw/x/a b.csv"),
            ("raw/x/a%20b.csv", "raw/x/a b.csv"),
            ("raw/x/c%2B%2B.csv", "raw/x/c++.csv"),
            (
                "raw/x/dt%3D2024-01-01/S%C3%A3o+Paulo.csv",
                "raw/x/dt=2024-01-01/São Paulo.csv",
            ),
            ("raw/x/%E2%9C%93.csv", "raw/x/✓.csv"),
            ("raw/x/plain.csv", "raw/x/plain.csv"),
        ] {
            assert_eq!(decode_key(enc).unwrap(), dec, "{enc}");
        }
        assert!(matches!(
            decode_key("raw/x/%C3%28.csv"),
            Err(EventError::BadKey { .. })
        ));
    }

    #[test]
    fn unknown_events_are_refused() {
        assert!(matches!(
            objects(&serde_json::json!({})),
            Err(EventError::Unknown)
        ));
        let eb = serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert!(objects(&eb).is_err());
    }
}
