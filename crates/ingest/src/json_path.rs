//! The next-page cursor or link at a dotted path of a page, found without decoding the rest of
//! the page: the records are skipped over byte by byte, so one that no parser takes (a lone
//! surrogate, `\ud800`) does not hide the cursor. (A strict parser fails there, and paging
//! stopped early: the rest of the window was never fetched, yet the watermark moved past it.)

/// The value at a dotted path of a JSON document, if it is a non-empty string or a number
/// (its exact text).
///
/// ```
/// use sluice_ingest::run::json_path_string;
///
/// let body = br#"{"items":[{"a":1}],"page_info":{"next_page_token":"bzo1MDA","total":9}}"#;
/// assert_eq!(json_path_string(body, "page_info.next_page_token").as_deref(), Some("bzo1MDA"));
/// assert_eq!(json_path_string(body, "page_info.total").as_deref(), Some("9"));
/// assert_eq!(json_path_string(body, "page_info.prev_page_token"), None);
/// // A record no parser takes does not hide the cursor.
/// let broken = br#"{"items":[{"name":"\ud800"}],"page_info":{"next_page_token":"n2"}}"#;
/// assert_eq!(json_path_string(broken, "page_info.next_page_token").as_deref(), Some("n2"));
/// ```
pub fn json_path_string(body: &[u8], path: &str) -> Option<String> {
    let mut s = Scanner { b: body, i: 0 };
    s.find(path)?;
    s.scalar()
}

/// The boolean at a dotted path of a JSON document (`has_more`), if it is `true` or `false`.
///
/// ```
/// use sluice_ingest::json_path::json_path_bool;
///
/// assert_eq!(json_path_bool(br#"{"data":[],"has_more":false}"#, "has_more"), Some(false));
/// assert_eq!(json_path_bool(br#"{"has_more":"yes"}"#, "has_more"), None);
/// ```
pub fn json_path_bool(body: &[u8], path: &str) -> Option<bool> {
    let mut s = Scanner { b: body, i: 0 };
    s.find(path)?;
    match s.scalar_bytes_at()? {
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_whitespace() {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.ws()? == want).then(|| self.i += 1)
    }

    /// Moves to the value at dotted `path` in the object that starts here. A key may hold dots
    /// itself (`@odata.nextLink`): a key equal to the whole rest of the path is taken first,
    /// else a key equal to its first segments is descended into, and left again if the rest is
    /// not found there.
    fn find(&mut self, path: &str) -> Option<()> {
        self.eat(b'{')?;
        if self.ws()? == b'}' {
            return None;
        }
        loop {
            let k = decode(self.string()?);
            self.eat(b':')?;
            if let Some(k) = k {
                if k == path {
                    return Some(());
                }
                if let Some(rest) = path
                    .strip_prefix(k.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                {
                    let at = self.i;
                    if self.find(rest).is_some() {
                        return Some(());
                    }
                    self.i = at;
                }
            }
            self.skip_value()?;
            match self.ws()? {
                b',' => self.i += 1,
                _ => return None,
            }
        }
    }

    /// The raw bytes of the string that starts here, quotes included (escapes not decoded).
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.eat(b'"')?;
        let start = start.max(self.i - 1);
        loop {
            match *self.b.get(self.i)? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some(&self.b[start..self.i]);
                }
                _ => self.i += 1,
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.ws()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.ws()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.i += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                self.scalar_bytes()?;
                Some(())
            }
        }
    }

    /// The literal (`true`, a number) that starts here.
    fn scalar_bytes_at(&mut self) -> Option<&'a [u8]> {
        self.ws()?;
        self.scalar_bytes()
    }

    /// A number or literal: up to the next delimiter.
    fn scalar_bytes(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace() {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| &self.b[start..self.i])
    }

    /// The string (decoded, non-empty) or number (exact text) that starts here.
    fn scalar(&mut self) -> Option<String> {
        match self.ws()? {
            b'"' => decode(self.string()?).filter(|s| !s.is_empty()),
            b'-' | b'0'..=b'9' => {
                let text = std::str::from_utf8(self.scalar_bytes()?).ok()?;
                // Valid JSON number grammar; the text itself is kept, exactly.
                serde_json::from_str::<serde_json::Number>(text)
                    .ok()
                    .map(|_| text.to_owned())
            }
            _ => None,
        }
    }
}

/// A JSON string literal (quotes included), decoded; `None` if it is not valid JSON text.
fn decode(raw: &[u8]) -> Option<String> {
    serde_json::from_slice(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths() {
        assert_eq!(json_path_string(br#"{"a":{"b":""}}"#, "a.b"), None);
        assert_eq!(
            json_path_string(br#"{"x":[1,{"b":"]}"}],"a":{"c":1,"b":"t"}}"#, "a.b").as_deref(),
            Some("t")
        );
        assert_eq!(json_path_string(br#"{"a":{"b":null}}"#, "a.b"), None);
        assert_eq!(
            json_path_string(br#"{"a":1.50e3}"#, "a").as_deref(),
            Some("1.50e3")
        );
        assert_eq!(
            json_path_string(br#"{"a":"x\"y"}"#, "a").as_deref(),
            Some("x\"y")
        );
        assert_eq!(json_path_string(br#"{"a":12"#, "a").as_deref(), Some("12"));
        assert_eq!(json_path_string(br#"[1]"#, "a"), None);
        assert_eq!(json_path_string(br#"{"a":tru}"#, "a"), None);
        assert_eq!(json_path_string(b"", "a"), None);
    }

    #[test]
    fn keys_with_dots() {
        let odata = br#"{"@odata.context":"c","value":[{"a":1}],"@odata.nextLink":"https://h/x?$skiptoken=2"}"#;
        assert_eq!(
            json_path_string(odata, "@odata.nextLink").as_deref(),
            Some("https://h/x?$skiptoken=2")
        );
        // `a` is entered, `b.c` is not there, so `a.b.c` is found as a key further on.
        let both = br#"{"a":{"x":1},"a.b.c":"flat","z":0}"#;
        assert_eq!(json_path_string(both, "a.b.c").as_deref(), Some("flat"));
        let hal = br#"{"_embedded":{"s":[]},"_links":{"self":{"href":"s"},"next":{"href":"n"}}}"#;
        assert_eq!(
            json_path_string(hal, "_links.next.href").as_deref(),
            Some("n")
        );
        assert_eq!(
            json_path_bool(br#"{"m":{"more":true}}"#, "m.more"),
            Some(true)
        );
        assert_eq!(json_path_bool(br#"{"more":truex}"#, "more"), None);
    }

    /// JSON values whose strings hold the bytes the scanner must not take for structure:
    /// quotes, brackets, backslashes, and text beyond ASCII.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        let text = || proptest::string::string_regex(r#"[a-z"\\{}\[\],:é ]{0,12}"#).unwrap();
        let leaf = prop_oneof![
            text().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The cursor after any records, compact or pretty-printed, is found as serde_json
        /// reads it; every prefix of the page gives that cursor or nothing, never a panic.
        #[test]
        fn the_cursor_after_any_records_is_found(
            items in value(),
            token in "[a-zA-Z0-9\"\\\\é]{1,8}",
            pretty in any::<bool>(),
        ) {
            let page = serde_json::json!({
                "items": items,
                "page_info": {"after": items, "next_page_token": token},
            });
            let body = if pretty {
                serde_json::to_vec_pretty(&page).unwrap()
            } else {
                serde_json::to_vec(&page).unwrap()
            };
            let path = "page_info.next_page_token";
            prop_assert_eq!(json_path_string(&body, path), Some(token.clone()));
            for cut in 0..body.len() {
                let found = json_path_string(&body[..cut], path);
                prop_assert!(found.is_none() || found.as_deref() == Some(&token[..]));
            }
        }
    }
}
