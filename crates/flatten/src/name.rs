//! Column names: safe, lower snake_case ASCII Postgres identifiers.
//!
//! ```
//! use sluice_flatten::name::sanitize_segment;
//!
//! let mut out = String::new();
//! sanitize_segment("Ação Época", &mut out);
//! assert_eq!(out, "acao_epoca");
//! ```

/// Postgres identifiers are truncated at 63 bytes (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;

/// Names Postgres reserves for system columns: a user column cannot have them.
pub const SYSTEM_COLUMNS: [&str; 6] = ["xmin", "xmax", "cmin", "cmax", "ctid", "tableoid"];

/// Appends the sanitized form of one path segment to `out`.
///
/// Non-ASCII letters are transliterated (`ç` → `c`, `ß` → `ss`, `北京` → `bei_jing`), so no letter is
/// dropped; camelCase becomes snake_case; anything that is not `[a-z0-9]` becomes `_`.
pub fn sanitize_segment(segment: &str, out: &mut String) {
    if segment.is_ascii() {
        push_ascii_snake(segment.as_bytes(), out);
    } else {
        let ascii = deunicode::deunicode_with_tofu(segment, "_");
        push_ascii_snake(ascii.trim().as_bytes(), out);
    }
}

fn push_ascii_snake(bytes: &[u8], out: &mut String) {
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_uppercase() {
            let prev = if i > 0 { bytes[i - 1] } else { 0 };
            let next = bytes.get(i + 1).copied().unwrap_or(0);
            let boundary = prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next.is_ascii_lowercase());
            if boundary && !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push(b.to_ascii_lowercase() as char);
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(b as char);
        } else {
            out.push('_');
        }
    }
}

/// Makes a joined, sanitized name a valid identifier: never empty, no leading digit, not a system
/// column name, at most [`MAX_IDENT_BYTES`] bytes. `path_hash` keeps shortened names distinct.
pub fn finish_name(mut name: String, path_hash: u64) -> String {
    if name.is_empty() {
        name.push('_');
    }
    if name.as_bytes()[0].is_ascii_digit() {
        name.insert(0, '_');
    }
    if SYSTEM_COLUMNS.contains(&name.as_str()) {
        name.push('_');
    }
    if name.len() > MAX_IDENT_BYTES {
        name = shorten(&name, path_hash, MAX_IDENT_BYTES);
    }
    name
}

/// Cuts `name` to `max` bytes, ending in `_` and 8 hex digits of `hash`.
pub fn shorten(name: &str, hash: u64, max: usize) -> String {
    let suffix = format!("_{:08x}", (hash ^ (hash >> 32)) as u32);
    let keep = max.saturating_sub(suffix.len()).min(name.len());
    let mut out = String::with_capacity(max);
    out.push_str(&name[..keep]); // names are ASCII: any byte index is a char boundary
    out.push_str(&suffix);
    out
}

/// `name` with a numeric suffix (`price_2`), shortened if needed to stay a valid identifier.
pub fn with_suffix(name: &str, n: usize) -> String {
    let suffix = format!("_{n}");
    let keep = (MAX_IDENT_BYTES - suffix.len()).min(name.len());
    format!("{}{suffix}", &name[..keep])
}

/// FNV-1a, 64 bit: a tiny, stable hash (the same on every platform and release).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(s: &str) -> String {
        let mut out = String::new();
        sanitize_segment(s, &mut out);
        out
    }

    #[test]
    fn transliterates_and_never_drops_letters() {
        assert_eq!(seg("ação"), "acao");
        assert_eq!(seg("São Paulo"), "sao_paulo");
        assert_eq!(seg("Straße"), "strasse");
        assert_eq!(seg("北京"), "bei_jing");
        assert_eq!(seg("Ελλάδα"), "ellada");
    }

    #[test]
    fn snake_cases_camel_case() {
        assert_eq!(seg("approvedDate"), "approved_date");
        assert_eq!(seg("HTTPCode"), "http_code");
        assert_eq!(seg("Price"), "price");
        assert_eq!(seg("already_snake"), "already_snake");
        assert_eq!(seg("v2Value"), "v2_value");
    }

    #[test]
    fn symbols_become_underscores() {
        assert_eq!(seg("a-b c.d"), "a_b_c_d");
        assert_eq!(seg("$%"), "__");
        assert_eq!(seg(""), "");
    }

    #[test]
    fn finish_makes_valid_identifiers() {
        assert_eq!(finish_name(String::new(), 1), "_");
        assert_eq!(finish_name("1st".into(), 1), "_1st");
        for sys in SYSTEM_COLUMNS {
            assert_eq!(finish_name(sys.into(), 1), format!("{sys}_"));
        }
        let long = "x".repeat(100);
        let a = finish_name(long.clone(), 1);
        let b = finish_name(long, 2);
        assert_eq!(a.len(), MAX_IDENT_BYTES);
        assert_ne!(a, b, "distinct paths keep distinct shortened names");
    }

    #[test]
    fn suffix_stays_within_limit() {
        let n = with_suffix(&"y".repeat(63), 12);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_12"));
        assert_eq!(with_suffix("price", 2), "price_2");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
