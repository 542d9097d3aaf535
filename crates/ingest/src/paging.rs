//! Where the next page is, for each pagination style a source can declare, and when paging is
//! over. Styles whose page names the next one (a cursor, a `Link`, a next URL, the last
//! record's id, a header) are known before the page is flattened, so the next request goes out
//! while it is; page numbers and offsets are decided after it, from the records it held and
//! the totals the source declares.
//!
//! Nothing the API sends is trusted to end paging quietly: a cursor or URL sent twice, a page
//! that repeats the one before, a total its pages contradict and an empty page before the total
//! are errors, so the run fails and its window is fetched again instead of skipping records.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use sluice_flatten::{InputFormat, RecordReader};

use crate::http::{Api, Page, link_next};
use crate::json_path::{json_path_bool, json_path_string};
use crate::source::Pagination;

/// How a page holds its records: the array at `records_path`, or the body itself when it is
/// empty.
pub(crate) fn records_format(records_path: &str) -> InputFormat {
    if records_path.is_empty() {
        InputFormat::Array
    } else {
        InputFormat::path(records_path)
    }
}

/// One page request: a path below `base_url` (or a URL the API sent) and its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub url: String,
    pub query: Vec<(String, String)>,
}

/// What a page says about the next one before it is flattened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Early {
    Next(Request),
    End,
    /// Page numbers and offsets: known after the page's records are counted ([`Pager::after`]).
    Later,
}

/// The paging state of one window chunk (or of a source without a window).
pub(crate) struct Pager<'a> {
    api: &'a Api,
    records_path: &'a str,
    /// The source's fixed parameters, the page size and the window.
    base: Vec<(String, String)>,
    /// The page number or offset of the last request.
    number: u64,
    /// Pages and records so far.
    pages: u64,
    records: u64,
    total: Option<u64>,
    total_pages: Option<u64>,
    /// Cursors and URLs sent so far: one sent again would loop for ever.
    seen: HashSet<String>,
    /// The hash of the last page's body (page numbers and offsets).
    last_body: Option<u64>,
}

impl<'a> Pager<'a> {
    pub fn new(api: &'a Api, base: Vec<(String, String)>) -> Self {
        let number = match &api.source.pagination {
            Pagination::PageNumber { first, .. } => *first,
            _ => 0,
        };
        Pager {
            api,
            records_path: &api.source.records_path,
            base,
            number,
            pages: 0,
            records: 0,
            total: None,
            total_pages: None,
            seen: HashSet::new(),
            last_body: None,
        }
    }

    /// The first request.
    pub fn first(&self) -> Request {
        match &self.api.source.pagination {
            Pagination::PageNumber { .. } | Pagination::Offset { .. } => self.numbered(),
            _ => Request {
                url: self.api.source.path.clone(),
                query: self.base.clone(),
            },
        }
    }

    fn numbered(&self) -> Request {
        let param = match &self.api.source.pagination {
            Pagination::PageNumber { param, .. } => param,
            Pagination::Offset { offset_param, .. } => offset_param,
            _ => unreachable!("numbered styles only"),
        };
        self.with(param, self.number.to_string())
    }

    /// The source's path with `param=value` added to the base query.
    fn with(&self, param: &str, value: String) -> Request {
        let mut query = self.base.clone();
        query.push((param.to_owned(), value));
        Request {
            url: self.api.source.path.clone(),
            query,
        }
    }

    /// The next request when `page` (the answer to `current`) names it.
    pub fn early(&mut self, current: &Request, page: &Page) -> Result<Early, String> {
        let pagination = &self.api.source.pagination;
        let token = match pagination {
            Pagination::Cursor { cursor_path, .. } => json_path_string(&page.body, cursor_path),
            Pagination::LinkHeader => link_next(&page.headers),
            Pagination::NextUrl { path } => json_path_string(&page.body, path),
            Pagination::HeaderCursor { header, .. } => page
                .header(header)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            Pagination::LastItem {
                id_path,
                has_more_path,
                ..
            } => self.last_item(page, id_path, has_more_path.as_deref())?,
            Pagination::None => return Ok(Early::End),
            Pagination::PageNumber { .. } | Pagination::Offset { .. } => return Ok(Early::Later),
        };
        let Some(token) = token else {
            return Ok(Early::End);
        };
        let next = match pagination {
            Pagination::LinkHeader | Pagination::NextUrl { .. } => Request {
                url: self
                    .api
                    .next_page_url(&current.url, &token)
                    .map_err(|e| e.to_string())?,
                query: Vec::new(),
            },
            Pagination::Cursor { cursor_param, .. } => self.with(cursor_param, token),
            Pagination::HeaderCursor { param, .. } | Pagination::LastItem { param, .. } => {
                self.with(param, token)
            }
            _ => unreachable!("the styles above"),
        };
        let seen_as = next.url.clone() + &format!("{:?}", next.query);
        if !self.seen.insert(seen_as) {
            let what = next.query.last().map_or(&next.url, |(_, v)| v);
            return Err(format!(
                "the API sent the next-page cursor or link {what:?} again"
            ));
        }
        Ok(Early::Next(next))
    }

    /// The id of the page's last record, unless `has_more_path` says this is the last page
    /// (or, without one, the page is empty).
    fn last_item(
        &self,
        page: &Page,
        id_path: &str,
        has_more_path: Option<&str>,
    ) -> Result<Option<String>, String> {
        if let Some(path) = has_more_path {
            match json_path_bool(&page.body, path) {
                Some(false) => return Ok(None),
                Some(true) => {}
                None => return Err(format!("the page has no true or false at {path:?}")),
            }
        }
        let mut reader = RecordReader::new(&page.body[..], records_format(self.records_path));
        let mut last = None;
        while let Some(r) = reader.next_record().map_err(|e| e.to_string())? {
            last = Some((r.offset as usize, r.bytes.len()));
        }
        match (last, has_more_path) {
            (None, Some(path)) => Err(format!(
                "{path:?} is true, but the page has no record to continue after"
            )),
            (None, None) => Ok(None),
            (Some((at, len)), _) => json_path_string(&page.body[at..at + len], id_path)
                .map(Some)
                .ok_or_else(|| format!("the page's last record has no {id_path:?}")),
        }
    }

    /// After a page-number or offset page of `records` records: the next request, or `None`
    /// when paging is over — on an empty page, or where the declared totals say.
    pub fn after(&mut self, page: &Page, records: u64) -> Result<Option<Request>, String> {
        self.pages += 1;
        self.records += records;
        let totals = self.api.source.pagination.totals();
        if totals.any() {
            self.read_totals(page)?;
            let (got, pages) = (self.records, self.pages);
            if let Some(t) = self.total
                && got > t
            {
                return Err(format!(
                    "the API's total is {t} records, but its pages held {got} already: the total cannot be trusted"
                ));
            }
            let done = self.total.is_some_and(|t| got >= t)
                || self.total_pages.is_some_and(|p| pages >= p);
            if done {
                return match self.total {
                    Some(t) if got < t => Err(format!(
                        "the pages ended (page {pages} of {}) with {got} records, but the API's total is {t}",
                        self.total_pages.unwrap_or(pages)
                    )),
                    _ => Ok(None),
                };
            }
            if records == 0 {
                let of = match (self.total, self.total_pages) {
                    (Some(t), _) => format!("{got} of the API's total of {t} records came"),
                    (None, Some(p)) => format!("page {pages} of the API's {p}"),
                    (None, None) => unreachable!("read_totals found one"),
                };
                return Err(format!("an empty page before the end: {of}"));
            }
        } else if records == 0 {
            return Ok(None);
        } else {
            let mut h = std::hash::DefaultHasher::new();
            page.body.hash(&mut h);
            let hash = h.finish();
            if self.last_body.replace(hash) == Some(hash) {
                return Err(
                    "the page holds the same records as the page before: the API may repeat its last page past the end; declare its total (total_path, total_pages_path or total_header)"
                        .into(),
                );
            }
        }
        self.number += match &self.api.source.pagination {
            Pagination::Offset { .. } => records,
            _ => 1,
        };
        Ok(Some(self.numbered()))
    }

    /// The totals the page holds, where the source says they are (a page without them keeps
    /// the last ones; the first page must have one).
    fn read_totals(&mut self, page: &Page) -> Result<(), String> {
        let totals = self.api.source.pagination.totals();
        let number = |text: &str, from: &str| {
            text.trim().parse::<u64>().map_err(|_| {
                format!("the total at {from:?} is {text:?}, not a count of records or pages")
            })
        };
        if let Some(path) = totals.total_path
            && let Some(t) = json_path_string(&page.body, path)
        {
            self.total = Some(number(&t, path)?);
        }
        if let Some(h) = totals.total_header
            && let Some(t) = page.header(h)
        {
            self.total = Some(number(t, h)?);
        }
        if let Some(path) = totals.total_pages_path
            && let Some(t) = json_path_string(&page.body, path)
        {
            self.total_pages = Some(number(&t, path)?);
        }
        if self.total.is_none() && self.total_pages.is_none() {
            let names: Vec<&str> = [
                totals.total_path,
                totals.total_pages_path,
                totals.total_header,
            ]
            .into_iter()
            .flatten()
            .collect();
            return Err(format!("the page has no total at {}", names.join(" or ")));
        }
        Ok(())
    }
}
