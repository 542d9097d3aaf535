//! The README's configuration reference against the code: every variable the Lambdas read is
//! listed, and the TOML examples parse with the real parsers (which refuse unknown keys).

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

/// The text of the section starting at `heading` (up to the next heading of the same level).
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let level = heading.split(' ').next().unwrap();
    let body = &text[start + heading.len() + 2..];
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    &body[..end]
}

/// The first fenced block of `lang` in `text`.
fn fenced<'a>(text: &'a str, lang: &str) -> &'a str {
    let open = format!("```{lang}\n");
    let start = text.find(&open).expect("a fenced block") + open.len();
    &text[start..start + text[start..].find("```").unwrap()]
}

#[test]
fn every_variable_the_lambdas_read_is_in_the_reference() {
    let text = readme();
    let env = section(
        section(&text, "## Configuration reference"),
        "### Environment",
    );
    for var in sluice_loader::config::ENV_VARS
        .iter()
        .chain(sluice_ingest::config::ENV_VARS)
        .chain(sluice_api::config::ENV_VARS)
        .chain(sluice_compact::config::ENV_VARS)
    {
        assert!(
            env.lines()
                .any(|l| l.starts_with('|') && l.contains(&format!("`{var}`"))),
            "{var} is read by a Lambda but missing from the README's configuration reference"
        );
    }
}

#[test]
fn the_readme_examples_parse() {
    let text = readme();
    let sources = fenced(
        section(&text, "### Sources (TOML, `INGEST_SOURCES`)"),
        "toml",
    );
    let parsed = sluice_ingest::Sources::from_toml(sources).expect("the sources example parses");
    assert!(parsed.get("orders").is_some() && parsed.get("hotmart-sales").is_some());
    let mapping = fenced(
        section(&text, "## transform: mapping, inference, upsert plan"),
        "toml",
    );
    sluice_transform::Mapping::from_toml(mapping).expect("the mapping example parses");
}

#[test]
fn every_real_api_example_parses() {
    let text = readme();
    let examples = section(&text, "### Sources for real APIs");
    let mut rest = examples;
    let mut n = 0;
    while rest.contains("```toml\n") {
        let block = fenced(rest, "toml");
        let sources =
            sluice_ingest::Sources::from_toml(block).unwrap_or_else(|e| panic!("{e}\nin\n{block}"));
        assert_eq!(sources.0.len(), 1, "{block}");
        n += 1;
        rest = &rest[rest.find(block).unwrap() + block.len()..];
    }
    assert!(n >= 7, "{n} examples");
}

#[test]
fn every_pagination_and_auth_kind_is_in_the_reference() {
    let text = readme();
    let reference = section(
        section(&text, "## Configuration reference"),
        "### Sources (`INGEST_SOURCES`, one `[source.NAME]` table each)",
    );
    let row = |key: &str| {
        reference
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("no {key} row"))
    };
    for (key, kinds) in [
        ("pagination", sluice_ingest::source::PAGINATION_KINDS),
        ("auth", sluice_ingest::source::AUTH_KINDS),
    ] {
        for kind in kinds {
            assert!(row(key).contains(&format!("`{kind}`")), "{key} {kind}");
        }
    }
}
