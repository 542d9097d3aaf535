//! Mapping TOML: any text gives a mapping or an error, never a panic; a mapping binds to a
//! header of its own columns or says why not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_transform::Mapping;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = Mapping::from_toml(text) else {
        return;
    };
    let mut header: Vec<&str> = m.columns.keys().map(String::as_str).collect();
    header.push("id");
    let _ = m.bind(&header, &[]);
});
