//! JSON record → flat row, depth-first, columns in first-seen order.

use jiter::{Jiter, JiterError, Peek};
use serde::{Deserialize, Serialize};

use crate::name;
use crate::schema::{JsonTypes, Manifest, Schema, SchemaMark, Segment, SourcePath};

/// Nesting deeper than this is kept as JSON text even without `max_depth` (never a stack overflow).
pub const HARD_MAX_DEPTH: usize = 64;

/// What to do with arrays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrayPolicy {
    /// The array as compact JSON text in one column (lossless).
    #[default]
    Json,
    /// One column per element: `commissions_0_value`, `commissions_1_value`.
    Index,
}

impl std::str::FromStr for ArrayPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "index" => Ok(Self::Index),
            other => Err(format!(
                "unknown array policy {other:?} (expected json or index)"
            )),
        }
    }
}

/// The column that holds, as a JSON object, the leaves beyond [`Options::max_columns`].
pub const OVERFLOW: &str = "_overflow";

/// How records are flattened.
///
/// ```
/// use sluice_flatten::{ArrayPolicy, Options};
///
/// let opts = Options { separator: "__".into(), arrays: ArrayPolicy::Index, max_depth: Some(3), max_columns: None };
/// opts.validate().unwrap();
/// assert!(Options { separator: ".".into(), ..Options::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Joins nested keys; `[a-z0-9_]+` so every name stays a plain identifier. Default `_`.
    pub separator: String,
    pub arrays: ArrayPolicy,
    /// Objects and arrays nested deeper than this many keys are kept as JSON text.
    pub max_depth: Option<usize>,
    /// At most this many columns (≥ 2). Leaves of paths beyond it go into one last column,
    /// `_overflow`: a JSON object of their JSONPaths and values, so map-shaped data (keys that
    /// are IDs) cannot grow a table past Postgres' 1,600 columns.
    pub max_columns: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            separator: "_".into(),
            arrays: ArrayPolicy::Json,
            max_depth: None,
            max_columns: None,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<(), crate::Error> {
        let ok = !self.separator.is_empty()
            && self.separator.len() <= 8
            && self
                .separator
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(crate::Error::Options(format!(
                "separator {:?} must be 1 to 8 characters of [a-z0-9_]",
                self.separator
            )));
        }
        if self.max_depth == Some(0) {
            return Err(crate::Error::Options("max_depth must be at least 1".into()));
        }
        self.validate_columns()
    }

    fn validate_columns(&self) -> Result<(), crate::Error> {
        match self.max_columns {
            Some(m) if m < 2 => Err(crate::Error::Options(format!(
                "max_columns {m}: at least 2 (one column and the overflow)"
            ))),
            _ => Ok(()),
        }
    }

    fn depth_limit(&self) -> usize {
        self.max_depth.unwrap_or(HARD_MAX_DEPTH).min(HARD_MAX_DEPTH)
    }
}

/// One flattened record: a value (or NULL) per schema column, borrowed from an internal buffer.
///
/// Columns the record did not have are NULL; the row may be shorter than a schema that grew later.
#[derive(Debug, Default, Clone)]
pub struct Row {
    spans: Vec<Option<(u32, u32)>>,
    buf: String,
}

impl Row {
    /// The value of column `i`: `None` is NULL (JSON null, or absent from this record).
    pub fn get(&self, i: usize) -> Option<&str> {
        match self.spans.get(i) {
            Some(Some((start, len))) => {
                Some(&self.buf[*start as usize..(*start as usize + *len as usize)])
            }
            _ => None,
        }
    }
    /// Number of columns the schema had when this row was made.
    pub fn len(&self) -> usize {
        self.spans.len()
    }
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> {
        (0..self.len()).map(|i| self.get(i))
    }
    fn reset(&mut self, width: usize) {
        self.spans.clear();
        self.spans.resize(width, None);
        self.buf.clear();
    }
    fn set(&mut self, col: usize, value: &str) {
        if col >= self.spans.len() {
            self.spans.resize(col + 1, None);
        }
        let start = self.buf.len() as u32;
        self.buf.push_str(value);
        self.spans[col] = Some((start, value.len() as u32));
    }
    fn set_null(&mut self, col: usize) {
        if col >= self.spans.len() {
            self.spans.resize(col + 1, None);
        }
        self.spans[col] = None;
    }
}

#[derive(Debug)]
struct Node {
    parent: u32,
    seg: Segment,
    children: Vec<u32>,
    column: Option<u32>,
}

/// How much of its input a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// All of it: nothing but whitespace may follow the object.
    Whole,
    /// Its start: the object ends where it ends.
    Prefix,
}

/// Where and why a record failed, relative to the record's first byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub offset: usize,
    pub path: SourcePath,
    pub message: String,
}

struct Fail {
    index: usize,
    node: u32,
    message: String,
}

fn jfail(node: u32) -> impl Fn(JiterError) -> Fail {
    move |e| Fail {
        index: e.index,
        node,
        message: e.error_type.to_string(),
    }
}

/// Flattens JSON objects into rows and grows the [`Schema`] as it goes.
///
/// ```
/// use sluice_flatten::{Flattener, Options};
///
/// let mut f = Flattener::new(Options::default());
/// let row = f.flatten(br#"{"purchase":{"price":{"value":97.00}},"tags":["a"],"x":null}"#).unwrap();
/// assert_eq!(row.get(0), Some("97.00"));     // numbers keep their exact text
/// assert_eq!(row.get(1), Some(r#"["a"]"#));   // arrays as JSON text by default
/// assert_eq!(row.get(2), None);              // null is NULL
/// let names: Vec<_> = f.schema().names().collect();
/// assert_eq!(names, ["purchase_price_value", "tags", "x"]);
/// ```
#[derive(Debug)]
pub struct Flattener {
    opts: Options,
    depth_limit: usize,
    nodes: Vec<Node>,
    schema: Schema,
    row: Row,
    tape: Vec<u8>,
    scratch: String,
    /// This record's leaves beyond `max_columns` (`"$.path":value,…`), and their column.
    overflow: String,
    overflow_col: Option<usize>,
    /// Columns whose types this record changed, and their types before (for a roll back).
    changed_types: Vec<(usize, JsonTypes)>,
}

impl Flattener {
    /// A flattener; `opts` should have passed [`Options::validate`].
    pub fn new(opts: Options) -> Self {
        let depth_limit = opts.depth_limit();
        Self {
            opts,
            depth_limit,
            nodes: vec![Node {
                parent: 0,
                seg: Segment::Key(String::new()),
                children: Vec::new(),
                column: None,
            }],
            schema: Schema::default(),
            row: Row::default(),
            tape: Vec::new(),
            scratch: String::new(),
            overflow: String::new(),
            overflow_col: None,
            changed_types: Vec::new(),
        }
    }

    /// Starts from an existing schema (for example a manifest from an earlier run), so columns
    /// keep their names and order.
    pub fn with_schema(opts: Options, schema: &Schema) -> Self {
        let mut f = Self::new(opts);
        for (i, col) in schema.columns().iter().enumerate() {
            let mut node = 0u32;
            for seg in &col.path.0 {
                node = f.child(node, seg.clone());
            }
            f.nodes[node as usize].column = Some(i as u32);
        }
        f.schema = schema.clone();
        f.overflow_col = f.schema.index_of(OVERFLOW);
        f
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The row of the last successful [`Flattener::flatten`].
    pub fn row(&self) -> &Row {
        &self.row
    }

    /// The manifest for the schema so far.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: "sluice-flatten/1".into(),
            separator: self.opts.separator.clone(),
            arrays: self.opts.arrays,
            max_depth: self.opts.max_depth,
            schema_hash: self.schema.hash(),
            columns: self.schema.columns().to_vec(),
            collisions: self.schema.collisions().to_vec(),
        }
    }

    /// Flattens one JSON object (the whole of `record`).
    pub fn flatten(&mut self, record: &[u8]) -> Result<&Row, RecordFailure> {
        if let Err(e) = std::str::from_utf8(record) {
            return Err(RecordFailure {
                offset: e.valid_up_to(),
                path: SourcePath::default(),
                message: "invalid UTF-8".into(),
            });
        }
        match self.walk(record, Extent::Whole).0 {
            Ok(()) => Ok(&self.row),
            Err(f) => Err(RecordFailure {
                offset: f.index,
                path: self.path_of(f.node),
                message: f.message,
            }),
        }
    }

    /// Flattens the JSON object at the start of `input`, when `input` holds the whole of it and
    /// it is valid: its length in bytes (what follows it is not read). `None` otherwise
    /// (truncated, invalid, not an object), with the row left unfinished: then frame the record
    /// and [`Flattener::flatten`] it for the error. One pass where framing and flattening each
    /// walked the record before.
    ///
    /// ```
    /// use sluice_flatten::{Flattener, Options};
    ///
    /// let mut f = Flattener::new(Options::default());
    /// let input = br#"{"a":{"b":1}} {"a":"#;
    /// assert_eq!(f.flatten_prefix(input), Some(13));
    /// assert_eq!(f.row().get(0), Some("1"));
    /// assert_eq!(f.flatten_prefix(&input[14..]), None); // truncated
    /// ```
    pub fn flatten_prefix(&mut self, input: &[u8]) -> Option<usize> {
        let mark = self.schema.mark();
        // jiter checks the UTF-8 of every string it decodes, and `json_text` of what it skips.
        match self.walk(input, Extent::Prefix) {
            (Ok(()), end) => Some(end),
            (Err(_), _) => {
                // As if not tried: `flatten` (which checks UTF-8 before it walks) starts from here.
                self.roll_back(mark);
                None
            }
        }
    }

    /// A new row from the object at the start of `input`, parsed with the reused tape: how it
    /// went, and where the parser stopped.
    fn walk(&mut self, input: &[u8], extent: Extent) -> (Result<(), Fail>, usize) {
        self.row.reset(self.schema.len());
        self.overflow.clear();
        self.changed_types.clear();
        let tape = std::mem::take(&mut self.tape);
        let mut j = Jiter::with_tape(input, tape);
        let mut result = self.walk_object(&mut j);
        if extent == Extent::Whole && result.is_ok() {
            result = j.finish().map_err(jfail(0));
        }
        let end = j.current_index();
        self.tape = j.into_tape();
        if result.is_ok() {
            self.finish_overflow();
        }
        (result, end)
    }

    /// The schema back at `mark`: columns, types and collisions, and the nodes' columns.
    fn roll_back(&mut self, mark: SchemaMark) {
        self.schema.roll_back(mark, &self.changed_types);
        let width = self.schema.len();
        for n in &mut self.nodes {
            if n.column.is_some_and(|c| c as usize >= width) {
                n.column = None;
            }
        }
        if self.overflow_col.is_some_and(|c| c >= width) {
            self.overflow_col = None;
        }
    }

    /// The object at the parser's position, members and all.
    fn walk_object(&mut self, j: &mut Jiter) -> Result<(), Fail> {
        let peek = j.peek().map_err(jfail(0))?;
        if peek != Peek::Object {
            return Err(Fail {
                index: j.current_index(),
                node: 0,
                message: format!("expected a JSON object, found {}", peek_name(peek)),
            });
        }
        if let Some(k) = j.known_object().map_err(jfail(0))? {
            let first = self.child_key(0, k, 0);
            self.walk_members(j, 0, first, 1)?;
        }
        Ok(())
    }

    /// Walks the members of an object whose first key resolved to `first`; `depth` is the key depth.
    fn walk_members(
        &mut self,
        j: &mut Jiter,
        parent: u32,
        first: u32,
        depth: usize,
    ) -> Result<(), Fail> {
        let mut child = first;
        let mut pos = 0usize;
        loop {
            let peek = j.peek().map_err(jfail(child))?;
            self.walk_value(j, child, depth, peek)?;
            pos += 1;
            match j.next_key().map_err(jfail(parent))? {
                None => return Ok(()),
                Some(k) => child = self.child_key(parent, k, pos),
            }
        }
    }

    fn walk_value(
        &mut self,
        j: &mut Jiter,
        node: u32,
        depth: usize,
        peek: Peek,
    ) -> Result<(), Fail> {
        match peek {
            Peek::Object => {
                if depth >= self.depth_limit {
                    return self.json_text(j, node, peek, JsonTypes::OBJECT);
                }
                match j.known_object().map_err(jfail(node))? {
                    None => self.leaf(node, Some("{}"), JsonTypes::OBJECT),
                    Some(k) => {
                        let first = self.child_key(node, k, 0);
                        self.walk_members(j, node, first, depth + 1)?;
                    }
                }
            }
            Peek::Array => {
                if self.opts.arrays == ArrayPolicy::Json || depth >= self.depth_limit {
                    return self.json_text(j, node, peek, JsonTypes::ARRAY);
                }
                match j.known_array().map_err(jfail(node))? {
                    None => self.leaf(node, Some("[]"), JsonTypes::ARRAY),
                    Some(mut p) => {
                        let mut i = 0u32;
                        loop {
                            let child = self.child(node, Segment::Index(i));
                            self.walk_value(j, child, depth + 1, p)?;
                            match j.array_step().map_err(jfail(node))? {
                                None => break,
                                Some(next) => p = next,
                            }
                            i += 1;
                        }
                    }
                }
            }
            Peek::String => {
                let s = j.known_str().map_err(jfail(node))?;
                self.leaf(node, Some(s), JsonTypes::STRING);
            }
            Peek::Null => {
                j.known_null().map_err(jfail(node))?;
                self.leaf(node, None, JsonTypes::NULL);
            }
            Peek::True | Peek::False => {
                let b = j.known_bool(peek).map_err(jfail(node))?;
                self.leaf(
                    node,
                    Some(if b { "true" } else { "false" }),
                    JsonTypes::BOOLEAN,
                );
            }
            p if p.is_num() => {
                let bytes = j.known_number_bytes(p).map_err(jfail(node))?;
                let t = if bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    JsonTypes::FLOAT
                } else {
                    JsonTypes::INTEGER
                };
                // Number bytes are ASCII digits, signs, dots and exponents.
                let text = std::str::from_utf8(bytes).unwrap_or_default();
                self.leaf(node, Some(text), t);
            }
            _ => {
                // Not a JSON value: let the parser produce its precise error.
                j.known_skip(peek).map_err(jfail(node))?;
                return Err(Fail {
                    index: j.current_index(),
                    node,
                    message: "expected a JSON value".into(),
                });
            }
        }
        Ok(())
    }

    /// Keeps the subtree at `node` as compact JSON text.
    fn json_text(
        &mut self,
        j: &mut Jiter,
        node: u32,
        peek: Peek,
        t: JsonTypes,
    ) -> Result<(), Fail> {
        let start = j.current_index();
        j.known_skip(peek).map_err(jfail(node))?;
        let raw = j.slice_to_current(start);
        // Skipped, not decoded: checked here (`flatten` checked the whole record already).
        let raw = std::str::from_utf8(raw).map_err(|e| Fail {
            index: start + e.valid_up_to(),
            node,
            message: "invalid UTF-8".into(),
        })?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let text = compact_json(raw, &mut scratch);
        self.leaf(node, Some(text), t);
        self.scratch = scratch;
        Ok(())
    }

    fn leaf(&mut self, node: u32, value: Option<&str>, t: JsonTypes) {
        let Some(col) = self.column(node) else {
            return self.overflow_leaf(node, value, t);
        };
        if let Some(before) = self.schema.note_type(col, t) {
            self.changed_types.push((col, before));
        }
        match value {
            Some(v) => self.row.set(col, v),
            None => self.row.set_null(col),
        }
    }

    /// The column of a leaf node, created (and named) the first time the path holds a value;
    /// `None` past `max_columns` (the leaf goes to the overflow).
    fn column(&mut self, node: u32) -> Option<usize> {
        if let Some(c) = self.nodes[node as usize].column {
            return Some(c as usize);
        }
        let regular = self.schema.len() - usize::from(self.overflow_col.is_some());
        if self.opts.max_columns.is_some_and(|m| regular + 1 >= m) {
            return None;
        }
        let path = self.path_of(node);
        let mut name = String::new();
        for (i, seg) in path.0.iter().enumerate() {
            if i > 0 {
                name.push_str(&self.opts.separator);
            }
            match seg {
                Segment::Key(k) => name::sanitize_segment(k, &mut name),
                Segment::Index(ix) => name.push_str(&ix.to_string()),
            }
        }
        let name = name::finish_name(name, path.stable_hash());
        let col = self.schema.add(path, name);
        self.nodes[node as usize].column = Some(col as u32);
        Some(col)
    }

    /// A leaf past `max_columns`: `"<JSONPath>":<value as JSON>` in this record's overflow.
    fn overflow_leaf(&mut self, node: u32, value: Option<&str>, t: JsonTypes) {
        let path = self.path_of(node).to_string();
        if !self.overflow.is_empty() {
            self.overflow.push(',');
        }
        self.overflow
            .push_str(&serde_json::Value::String(path).to_string());
        self.overflow.push(':');
        match value {
            None => self.overflow.push_str("null"),
            Some(v) if t == JsonTypes::STRING => self
                .overflow
                .push_str(&serde_json::Value::String(v.to_owned()).to_string()),
            // Numbers (exact text), booleans and JSON text as they are.
            Some(v) => self.overflow.push_str(v),
        }
    }

    /// The record's overflow, if any, as one JSON object in the `_overflow` column.
    fn finish_overflow(&mut self) {
        if self.overflow.is_empty() {
            return;
        }
        let col = match self.overflow_col {
            Some(c) => c,
            None => {
                let path = SourcePath(vec![Segment::Key(OVERFLOW.into())]);
                let c = self.schema.add(path, OVERFLOW.into());
                self.overflow_col = Some(c);
                c
            }
        };
        if let Some(before) = self.schema.note_type(col, JsonTypes::OBJECT) {
            self.changed_types.push((col, before));
        }
        let text = format!("{{{}}}", self.overflow);
        self.row.set(col, &text);
    }

    fn path_of(&self, mut node: u32) -> SourcePath {
        let mut segs = Vec::new();
        while node != 0 {
            let n = &self.nodes[node as usize];
            segs.push(n.seg.clone());
            node = n.parent;
        }
        segs.reverse();
        SourcePath(segs)
    }

    /// The child of `parent` for key `k`; `hint` is the key's position, where it usually sits.
    fn child_key(&mut self, parent: u32, k: &str, hint: usize) -> u32 {
        let children = &self.nodes[parent as usize].children;
        if let Some(&c) = children.get(hint)
            && matches!(&self.nodes[c as usize].seg, Segment::Key(s) if s == k)
        {
            return c;
        }
        for &c in children {
            if matches!(&self.nodes[c as usize].seg, Segment::Key(s) if s == k) {
                return c;
            }
        }
        self.new_child(parent, Segment::Key(k.to_owned()))
    }

    fn child(&mut self, parent: u32, seg: Segment) -> u32 {
        for &c in &self.nodes[parent as usize].children {
            if self.nodes[c as usize].seg == seg {
                return c;
            }
        }
        self.new_child(parent, seg)
    }

    fn new_child(&mut self, parent: u32, seg: Segment) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            parent,
            seg,
            children: Vec::new(),
            column: None,
        });
        self.nodes[parent as usize].children.push(id);
        id
    }
}

fn peek_name(p: Peek) -> &'static str {
    match p {
        Peek::Array => "an array",
        Peek::String => "a string",
        Peek::Null => "null",
        Peek::True | Peek::False => "a boolean",
        p if p.is_num() => "a number",
        _ => "something that is not JSON",
    }
}

/// Removes insignificant whitespace from valid JSON text (borrowed when there is none).
pub fn compact_json<'a>(raw: &'a str, scratch: &'a mut String) -> &'a str {
    if !raw
        .bytes()
        .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return raw;
    }
    scratch.clear();
    let mut in_str = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_str {
            scratch.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_str = true;
            }
            scratch.push(c);
        }
    }
    scratch
}
