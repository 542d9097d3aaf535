//! Takes the two files the docs page needs (Swagger UI's bundle and stylesheet) out of the
//! vendored Swagger UI archive and gzips them into `OUT_DIR`, so the binary carries them
//! compressed and serves them as they are: no CDN when building, none when viewing.

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The files served under `/docs/`, as they are named in the archive's `dist/`.
const FILES: [&str; 2] = ["swagger-ui-bundle.js", "swagger-ui.css"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let bytes = utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED;
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("the vendored Swagger UI zip");
    let first = archive
        .name_for_index(0)
        .expect("an entry in the archive")
        .expect("its name");
    let root = first.split('/').next().unwrap_or_default().to_owned();
    let version = root.trim_start_matches("swagger-ui-").to_owned();
    for file in FILES {
        let name = format!("{root}/dist/{file}");
        let mut entry = archive
            .by_name(&name)
            .unwrap_or_else(|e| panic!("{name} in the vendored Swagger UI: {e}"));
        let mut plain = Vec::new();
        entry.read_to_end(&mut plain).expect("read from the zip");
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&plain).expect("gzip in memory");
        let gz = gz.finish().expect("gzip in memory");
        std::fs::write(Path::new(&out).join(format!("{file}.gz")), gz).expect("write OUT_DIR");
    }
    println!("cargo::rustc-env=SWAGGER_UI_VERSION={version}");
}
