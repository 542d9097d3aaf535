//! Deterministic Hotmart-shaped sales records: every item is a pure function of
//! `(seed, n, mode, position)`, so two servers with the same settings serve the same bytes.
//!
//! The shape is the one of `../shared/baselines/sales_data.py` (the Python mock's): nested
//! objects, `null`s, an array (`commissions`), unicode names and cities. Money is written with
//! two decimals (`97.00`), which a float round trip would turn into `97.0`: a pipeline that keeps
//! numbers byte for byte shows it.
//!
//! ```
//! use sluice_sample_api::data::{Dataset, Mode};
//!
//! let d = Dataset::new(10, 42, Mode::Initial);
//! let item = String::from_utf8(d.item(0)).unwrap();
//! assert!(item.starts_with(r#"{"transaction":"HP0000001","product":{"id":"#));
//! assert_eq!(d.item(0), Dataset::new(10, 42, Mode::Initial).item(0));
//! ```

use std::fmt::Write as _;

/// Epoch milliseconds of the first sale (2023-11-14T22:13:20Z), as in the Python mock.
pub const BASE_TS: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

const FIRST: [&str; 16] = [
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabriela", "Heitor", "Isabela", "João",
    "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael",
];
const FIRST_ASCII: [&str; 16] = [
    "ana", "bruno", "carla", "diego", "elisa", "fabio", "gabriela", "heitor", "isabela", "joao",
    "larissa", "marcos", "natalia", "otavio", "paula", "rafael",
];
const LAST: [&str; 12] = [
    "Silva", "Souza", "Oliveira", "Santos", "Pereira", "Lima", "Costa", "Almeida", "Ribeiro",
    "Carvalho", "Gomes", "Martins",
];
const CITIES: [(&str, &str); 10] = [
    ("São Paulo", "SP"),
    ("Rio de Janeiro", "RJ"),
    ("Belo Horizonte", "MG"),
    ("Curitiba", "PR"),
    ("Porto Alegre", "RS"),
    ("Recife", "PE"),
    ("Salvador", "BA"),
    ("Fortaleza", "CE"),
    ("Brasília", "DF"),
    ("Manaus", "AM"),
];
/// (id, name, price in cents)
const PRODUCTS: [(u64, &str, i64); 6] = [
    (1200001, "Curso de Marketing Digital", 9700),
    (1200002, "Mentoria Finanças Pessoais", 49700),
    (1200003, "E-book Receitas Fit", 2990),
    (1200004, "Assinatura Clube do Inglês", 3990),
    (1200005, "Workshop Fotografia Mobile", 14700),
    (1200006, "Formação Python do Zero", 29700),
];
const SUBSCRIPTION_PRODUCT: u64 = 1200004;
const METHODS: [(&str, &str); 5] = [
    ("CREDIT_CARD", "CREDIT_CARD"),
    ("BILLET", "BILLET"),
    ("PIX", "PIX"),
    ("PAYPAL", "PAYPAL"),
    ("GOOGLE_PAY", "CREDIT_CARD"),
];
const SOURCES: [&str; 4] = ["PRODUCER", "AFFILIATE", "EXTERNAL", "CHECKOUT"];
const SCK: [Option<&str>; 5] = [
    None,
    Some("HOTMART_PRODUCT_PAGE"),
    Some("instagram_bio"),
    Some("yt_desc"),
    Some("email_d3"),
];
const UPDATE_STATUSES: [&str; 5] = [
    "REFUNDED",
    "CHARGEBACK",
    "COMPLETE",
    "CANCELLED",
    "PROTESTED",
];

/// Which data set is served (the Python mock's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Transactions `HP0000001..HP{n}`, first-seen versions.
    #[default]
    Initial,
    /// Every 5th position re-sends transaction `pos+1` changed (status, price, fee,
    /// commissions); the others are new transactions above `n`.
    Updates,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "initial" => Ok(Mode::Initial),
            "updates" => Ok(Mode::Updates),
            _ => Err(format!("unknown mode {s:?} (initial, updates)")),
        }
    }
}

/// splitmix64: a tiny, well-known generator; one stream per (seed, transaction, salt).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u64, salt: u64) -> Self {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ salt);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A served data set: `n` items of one mode.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub n: u64,
    pub seed: u64,
    pub mode: Mode,
    /// Items at or after this position carry an extra nested object (`coupon`): a schema that
    /// grows in the middle of a run.
    pub grow_schema_at: Option<u64>,
    /// Items at these positions are broken: `null`, or (every second one) a sale whose buyer
    /// name is a lone surrogate (`"\ud800"`), which no UTF-8 text can hold.
    pub broken: Vec<u64>,
    /// Above 0, about a third of the sales show a later status (`COMPLETE`, `REFUNDED`,
    /// `CHARGEBACK`), different for each revision: the API's view of the same sales, later.
    pub revision: u64,
    approved: Vec<i64>,
}

impl Dataset {
    pub fn new(n: u64, seed: u64, mode: Mode) -> Self {
        let approved = (0..n)
            .map(|pos| approved_date(seed, transaction_of(n, mode, pos)))
            .collect();
        Self {
            n,
            seed,
            mode,
            grow_schema_at: None,
            broken: Vec::new(),
            revision: 0,
            approved,
        }
    }

    /// `purchase.approved_date` (epoch ms) of the item at `pos`.
    pub fn approved(&self, pos: u64) -> i64 {
        self.approved[pos as usize]
    }

    /// Positions whose approved date is within `[start, end]` (both inclusive, either open).
    pub fn positions(&self, start: Option<i64>, end: Option<i64>) -> Vec<u32> {
        let (lo, hi) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        (0..self.n as u32)
            .filter(|&p| (lo..=hi).contains(&self.approved[p as usize]))
            .collect()
    }

    /// The transaction key of the item at `pos` (`HP0000001`).
    pub fn transaction(&self, pos: u64) -> String {
        format!("HP{:07}", transaction_of(self.n, self.mode, pos))
    }

    /// The item at `pos` as compact UTF-8 JSON.
    pub fn item(&self, pos: u64) -> Vec<u8> {
        let mut out = String::with_capacity(1200);
        self.write_item(pos, &mut out);
        out.into_bytes()
    }

    /// Appends the item at `pos` to `out`.
    pub fn write_item(&self, pos: u64, out: &mut String) {
        if let Some(i) = self.broken.iter().position(|b| *b == pos) {
            out.push_str(if i % 2 == 0 {
                "null"
            } else {
                r#"{"buyer":{"name":"\ud800"}}"#
            });
            return;
        }
        let index = transaction_of(self.n, self.mode, pos);
        let update = self.mode == Mode::Updates && pos.is_multiple_of(5);
        let grown = self.grow_schema_at.is_some_and(|g| pos >= g);
        write_sale(self.seed, index, update, grown, self.revision, out);
    }
}

fn transaction_of(n: u64, mode: Mode, pos: u64) -> u64 {
    match mode {
        Mode::Initial => pos + 1,
        Mode::Updates if pos.is_multiple_of(5) => pos + 1,
        Mode::Updates => n + pos + 1,
    }
}

fn order_date(seed: u64, index: u64) -> (i64, Rng) {
    let mut r = Rng::new(seed, index, 0);
    let order = BASE_TS + index as i64 * 60_000 + r.range(0, 59_000);
    (order, r)
}

fn approved_date(seed: u64, index: u64) -> i64 {
    let (order, mut r) = order_date(seed, index);
    order + r.range(1_000, 3_600_000)
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn fee(out: &mut String, cents: i64) {
    // 9.9 % + 1.00, rounded half up to the cent
    let total = (cents * 99 + 500) / 1000 + 100;
    let _ = write!(
        out,
        r#""hotmart_fee":{{"total":{},"fixed":1.00,"currency_code":"BRL","base":{},"percentage":9.9}}"#,
        money(total),
        money(cents)
    );
}

fn commissions(out: &mut String, r: &mut Rng, cents: i64) {
    let affiliate = r.chance(50);
    let coproducer = r.chance(20);
    let share = 100 - if affiliate { 30 } else { 0 } - if coproducer { 10 } else { 0 };
    let part = |pct: i64| money(cents * 90 * pct / 10_000);
    let _ = write!(
        out,
        r#""commissions":[{{"value":{},"source":"PRODUCER","currency_code":"BRL"}}"#,
        part(share)
    );
    if affiliate {
        let _ = write!(
            out,
            r#",{{"value":{},"source":"AFFILIATE","currency_code":"BRL"}}"#,
            part(30)
        );
    }
    if coproducer {
        let _ = write!(
            out,
            r#",{{"value":{},"source":"COPRODUCER","currency_code":"BRL"}}"#,
            part(10)
        );
    }
    out.push(']');
}

fn json_str(out: &mut String, s: Option<&str>) {
    match s {
        // Every string written here is from the tables above or ASCII built from them:
        // none needs escaping.
        Some(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

fn write_sale(seed: u64, index: u64, update: bool, grown: bool, revision: u64, out: &mut String) {
    let (order, mut r) = order_date(seed, index);
    let approved = order + r.range(1_000, 3_600_000);
    let first = r.below(16) as usize;
    let last = r.pick(&LAST);
    let (city, state) = r.pick(&CITIES);
    let (pid, pname, base) = r.pick(&PRODUCTS);
    let (method, ptype) = r.pick(&METHODS);
    let is_sub = pid == SUBSCRIPTION_PRODUCT;
    let mut cents = base * r.pick(&[100, 100, 90, 80, 120]) / 100;
    let installments = if method == "CREDIT_CARD" {
        r.pick(&[1, 1, 2, 3, 6, 12])
    } else {
        1
    };
    let sck = r.pick(&SCK);
    let tx = format!("HP{index:07}");
    let mut status = "APPROVED";
    let mut next_charge = is_sub.then_some(approved + 30 * DAY_MS);
    let (ucode, phone, zip1, zip2) = (
        r.next() >> 16,
        r.range(10_000_000, 99_999_999),
        r.range(1_000, 99_999),
        r.range(0, 999),
    );
    let funnel = r.chance(15);
    let recurrency = if is_sub { r.range(1, 13) } else { 1 };
    let offer = r.next() >> 24;
    let mode = r.pick(&["INVOICE", "MULTIPLE_PAYMENTS"]);
    let source = r.pick(&SOURCES);
    let ext = r.range(0, 1_000_000);
    if revision > 0 && !update {
        let mut v = Rng::new(seed, index, 100 + revision);
        if v.chance(33) {
            status = v.pick(&["COMPLETE", "REFUNDED", "CHARGEBACK"]);
        }
    }
    if update {
        let mut u = Rng::new(seed, index, 1);
        status = u.pick(&UPDATE_STATUSES);
        cents = cents * u.pick(&[50, 75, 110]) / 100;
        if matches!(status, "REFUNDED" | "CHARGEBACK" | "CANCELLED") {
            next_charge = None;
        }
        r = u;
    }
    let _ = write!(
        out,
        r#"{{"transaction":"{tx}","product":{{"id":{pid},"name":"{pname}"}},"buyer":{{"name":"{} {last}","email":"{}.{}{index}@example.com","ucode":"B{ucode:012x}","phone":"+55 11 9{phone}","address":{{"city":"{city}","state":"{state}","country":"Brasil","zipcode":"{zip1:05}-{zip2:03}"}}}},"producer":{{"name":"Escola Exemplo LTDA","ucode":"P{pid:012x}"}},"purchase":{{"transaction":"{tx}","approved_date":{approved},"order_date":{order},"status":"{status}","is_subscription":{is_sub},"is_funnel":{funnel},"warranty_expire_date":{},"date_next_charge":"#,
        FIRST[first],
        FIRST_ASCII[first],
        last.to_ascii_lowercase(),
        approved + 30 * DAY_MS,
    );
    match next_charge {
        Some(d) => {
            let _ = write!(out, "{d}");
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        r#","recurrency_number":{recurrency},"commission_as":"PRODUCER","price":{{"value":{},"currency_code":"BRL"}},"payment":{{"method":"{method}","installments_number":{installments},"type":"{ptype}"}},"offer":{{"code":"{:08x}","payment_mode":"{mode}"}},"tracking":{{"source_sck":"#,
        money(cents),
        offer & 0xffff_ffff,
    );
    json_str(out, sck);
    let _ = write!(
        out,
        r#","source":"{source}","external_code":"ext-{ext:06}"}},"#
    );
    fee(out, cents);
    out.push_str("},");
    commissions(out, &mut r, cents);
    if grown {
        let _ = write!(
            out,
            r#","coupon":{{"code":"BLACK{}","discount":{{"percent":10,"label":"Promoção ✓"}}}}"#,
            index % 7
        );
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_valid_json_with_the_hotmart_shape() {
        let mut d = Dataset::new(200, 7, Mode::Updates);
        d.grow_schema_at = Some(150);
        for pos in 0..200 {
            let v: serde_json::Value = serde_json::from_slice(&d.item(pos)).unwrap();
            assert_eq!(v["purchase"]["transaction"], v["transaction"]);
            assert_eq!(v["transaction"], d.transaction(pos).as_str());
            assert_eq!(v["purchase"]["approved_date"], d.approved(pos));
            assert!(!v["commissions"].as_array().unwrap().is_empty());
            assert_eq!(v.get("coupon").is_some(), pos >= 150);
            if pos.is_multiple_of(5) {
                assert_ne!(
                    v["purchase"]["status"], "APPROVED",
                    "updates change the status"
                );
            }
        }
    }

    #[test]
    fn a_revision_changes_the_status_of_some_sales_only() {
        let d0 = Dataset::new(300, 5, Mode::Initial);
        let mut d1 = Dataset::new(300, 5, Mode::Initial);
        d1.revision = 1;
        let changed = (0..300).filter(|&p| d0.item(p) != d1.item(p)).count();
        assert!((60..140).contains(&changed), "{changed}");
        for p in 0..300 {
            let (a, b): (serde_json::Value, serde_json::Value) = (
                serde_json::from_slice(&d0.item(p)).unwrap(),
                serde_json::from_slice(&d1.item(p)).unwrap(),
            );
            assert_eq!(
                a["purchase"]["approved_date"],
                b["purchase"]["approved_date"]
            );
            assert_eq!(a["buyer"], b["buyer"]);
        }
    }

    #[test]
    fn updates_reuse_every_fifth_key_and_add_new_ones() {
        let d = Dataset::new(10, 1, Mode::Updates);
        let keys: Vec<String> = (0..10).map(|p| d.transaction(p)).collect();
        assert_eq!(keys[0], "HP0000001");
        assert_eq!(keys[5], "HP0000006");
        assert_eq!(keys[1], "HP0000012");
    }

    #[test]
    fn positions_filter_on_approved_date_inclusive() {
        let d = Dataset::new(100, 3, Mode::Initial);
        let (a, b) = (d.approved(10), d.approved(20));
        let hits = d.positions(Some(a), Some(b));
        assert!(hits.contains(&10) && hits.contains(&20));
        assert!(
            hits.iter()
                .all(|&p| (a..=b).contains(&d.approved(p as u64)))
        );
        assert_eq!(d.positions(None, None).len(), 100);
    }
}
