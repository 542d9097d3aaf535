//! CsvReader: any bytes give records or an error naming the line, never a panic; what it
//! reads, written back with CsvWriter, reads the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_flatten::csv::{CsvReader, CsvRecord, CsvWriter};

type Fields = Vec<Option<Vec<u8>>>;

fn read_all(bytes: &[u8]) -> Option<Vec<Fields>> {
    let mut r = CsvReader::new(bytes).with_max_record_bytes(4096);
    let mut rec = CsvRecord::default();
    let mut out = Vec::new();
    loop {
        match r.read(&mut rec) {
            Ok(true) => out.push(rec.iter().map(|f| f.map(<[u8]>::to_vec)).collect()),
            Ok(false) => return Some(out),
            Err(e) => {
                assert!(e.to_string().starts_with("line "), "{e}");
                return None;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(records) = read_all(data) else {
        return;
    };
    let mut w = CsvWriter::new(Vec::new());
    for r in &records {
        w.write_fields(r.iter().map(|f| f.as_deref())).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let again = read_all(&bytes).expect("our own CSV reads");
    assert_eq!(again, records);
});
