//! What head office owes after the event: the hand-off to the CRM (decrypted, masked unless asked
//! otherwise), deletion when the retention period ends, and answering deletion requests.
//! Entries are opened with head office's identity only here, and only in memory.

use crate::error::{HoError, Result};
use crate::keys::HoDir;
use crate::now_ms;
use crate::store::{Audit, Store};
use sealbox_protocol::entry::{
    mask, normalize_email, normalize_phone, FieldValue, PayloadPlaintext, LIST_SEPARATOR,
};
use sealbox_protocol::event::{Display, FieldKind};
use sealbox_protocol::{EntryEnvelope, EventConfig};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// One stored entry, opened.
struct Opened {
    env: EntryEnvelope,
    device: String,
    payload: PayloadPlaintext,
}

/// An entry that cannot be used: its id and why (a stable code).
type Unreadable = (uuid::Uuid, &'static str);

/// How many sealed entries are opened together, in parallel on every core: no more than this
/// many are held in memory at once, whatever the number of entries.
const PAGE: usize = 512;

/// Opens one stored entry, or says why it cannot be used.
fn open_one(
    identity: &age::x25519::Identity,
    row: crate::store::StoredEntry,
) -> std::result::Result<Opened, Unreadable> {
    let env = row.env;
    let Ok(plain) = age::decrypt(identity, &env.sealed).map(Zeroizing::new) else {
        return Err((env.id, "does_not_open"));
    };
    let payload: PayloadPlaintext =
        serde_json::from_slice(&plain).map_err(|_| (env.id, "damaged_payload"))?;
    if !payload.matches(&env) {
        return Err((env.id, "envelope_mismatch"));
    }
    Ok(Opened {
        env,
        device: row.device,
        payload,
    })
}

/// Opens a page of entries on every core; the results come back in the page's order.
fn open_page(
    identity: &age::x25519::Identity,
    page: Vec<crate::store::StoredEntry>,
) -> Vec<std::result::Result<Opened, Unreadable>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(page.len())
        .max(1);
    if threads == 1 {
        return page.into_iter().map(|r| open_one(identity, r)).collect();
    }
    let size = page.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut rows = page.into_iter();
    loop {
        let chunk: Vec<_> = rows.by_ref().take(size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|r| open_one(identity, r))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Opens every entry (of one event, or all), oldest first, a page at a time, and hands each to
/// `f` in order. An entry whose payload does not open or does not match its envelope (anyone
/// holding a device token can post one) blocks nothing: it is returned apart, for
/// [`quarantine_unreadable`].
fn for_each_opened(
    store: &mut Store,
    identity: &age::x25519::Identity,
    event: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
    f: &mut dyn FnMut(Opened) -> Result<()>,
) -> Result<Vec<Unreadable>> {
    let total = store.count_entries(event)?;
    let mut unreadable = Vec::new();
    let mut done = 0u64;
    let mut page = Vec::with_capacity(PAGE);
    let mut drain = |page: &mut Vec<crate::store::StoredEntry>,
                     unreadable: &mut Vec<Unreadable>|
     -> Result<u64> {
        let n = page.len() as u64;
        for opened in open_page(identity, std::mem::take(page)) {
            match opened {
                Ok(o) => f(o)?,
                Err(bad) => unreadable.push(bad),
            }
        }
        Ok(n)
    };
    store.for_each_entry(event, &mut |row| {
        page.push(row);
        if page.len() >= PAGE {
            done += drain(&mut page, &mut unreadable)?;
            progress(done, total);
        }
        Ok(())
    })?;
    done += drain(&mut page, &mut unreadable)?;
    progress(done, total);
    Ok(unreadable)
}

/// Moves entries that do not open to the quarantine (counted in `status`, never exported),
/// audited with their ids and reasons, and warns: they block nothing else.
fn quarantine_unreadable(store: &mut Store, bad: &[Unreadable]) -> Result<()> {
    for (id, reason) in bad {
        store.quarantine_entry(
            *id,
            reason,
            Audit::new(
                now_ms(),
                "entry.quarantined",
                serde_json::json!({"entry": id, "reason": reason}),
            ),
        )?;
        tracing::warn!(entry = %id, reason, "an entry does not open: moved to the quarantine and skipped");
    }
    Ok(())
}

/// The CRM file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub rows: usize,
    pub unmasked: bool,
    /// Entries that repeat an earlier one of the event (same phone or email).
    pub duplicates: usize,
    /// Visitors with more than one entry.
    pub duplicate_groups: usize,
    /// Whether duplicates were merged into their earliest entry's row.
    pub merged: bool,
}

/// How the CRM file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    pub unmasked: bool,
    /// One row per visitor: the earliest entry (its consent) with later entries' values
    /// filling its empty fields.
    pub merge_duplicates: bool,
}

fn shown(kind: FieldKind, display: Display, v: &FieldValue, unmasked: bool) -> String {
    let text = match v {
        FieldValue::Bool(b) => return if *b { "yes".into() } else { "no".into() },
        FieldValue::Text(s) => s.clone(),
        FieldValue::List(l) => l.join(LIST_SEPARATOR),
    };
    match (unmasked, display) {
        (true, _) | (false, Display::Plain) if kind == FieldKind::Phone => phone_text(&text),
        (true, _) | (false, Display::Plain) => text,
        (false, Display::Masked) => mask(kind, &text),
        (false, Display::Hidden) => "[hidden]".into(),
    }
}

/// Country calling codes of one and two digits (ITU-T E.164); every other code has three.
/// They are prefix-free, so the first match is the code.
const SHORT_COUNTRY_CODES: &[&str] = &[
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
    "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// A phone number as the CRM file writes it: international, with a space after the country code
/// (`+86 138 1234 5678`, `+44 2079460958`). The spaces make it text for every spreadsheet
/// program (a bare `13812345678` becomes a number, and `+44…` loses its `+`), and CRM importers
/// read it as a phone number.
fn phone_text(normalized: &str) -> String {
    if let Some(digits) = normalized.strip_prefix('+') {
        let cc = SHORT_COUNTRY_CODES
            .iter()
            .find(|c| digits.starts_with(*c))
            .map_or_else(|| &digits[..digits.len().min(3)], |c| &digits[..c.len()]);
        return format!("+{cc} {}", &digits[cc.len()..]);
    }
    if normalized.len() == 11 && normalized.bytes().all(|b| b.is_ascii_digit()) {
        // A mainland mobile (normalised without +86): 3-4-4 as it is written in China.
        return format!(
            "+86 {} {} {}",
            &normalized[..3],
            &normalized[3..7],
            &normalized[7..]
        );
    }
    normalized.to_string()
}

/// A value spreadsheet programs read as text and never as a formula: a `+`, then digits, spaces
/// and mask stars, with at least one space or star (a phone as [`phone_text`] or the masked
/// display writes it).
fn phone_shaped(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|rest| {
        rest.bytes()
            .all(|b| b.is_ascii_digit() || b == b' ' || b == b'*')
            && rest.bytes().any(|b| b == b' ' || b == b'*')
            && rest.bytes().any(|b| b.is_ascii_digit())
    })
}

/// A CSV cell that a spreadsheet program would read as a formula (`= + - @`, tab, CR first) is
/// prefixed with `'`, whatever the field and whether masked or not; phones written as
/// [`phone_text`] or masked are read as text and stay as they are. XLSX cells are written as
/// strings and never run.
fn defuse(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !phone_shaped(s) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A capture time in UTC with milliseconds, always the same width:
/// `2026-12-02T09:30:05.120Z`.
fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// How wide a column must be for `s`, in characters of the default font: wide (CJK) characters
/// count twice.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if (c as u32) >= 0x1100 && !c.is_ascii() {
                2
            } else {
                1
            }
        })
        .sum()
}

/// The most rows an XLSX sheet holds, the header included.
const XLSX_MAX_ROWS: u32 = 1_048_576;

/// The XLSX workbook written as its rows come, a page at a time, straight into the compressed
/// sheet: every cell an inline string (never a number or a formula), the header bold and
/// frozen, columns as wide as their longest value (up to a limit) among the header and the
/// first page of rows (the column widths come before the rows in the file). Nothing but the
/// output itself is written: no temp file, no shared-string table in memory.
struct XlsxStream<'a> {
    zip: zip::ZipWriter<zip::write::StreamWriter<&'a mut Sink>>,
    header: Vec<String>,
    /// The first page, until the column widths are known; `None` once the sheet's rows began.
    first: Option<Vec<Zeroizing<Vec<String>>>>,
    /// The next row's number (1-based; the header is row 1).
    next: u32,
}

/// Text as XML character data: markup escaped, and characters XML 1.0 cannot carry (control
/// characters) written as spreadsheets' `_xHHHH_` escapes, as is an `_x` that would read as one.
fn xml_text(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    for (i, c) in s.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = std::fmt::Write::write_fmt(out, format_args!("_x{:04X}_", c as u32));
            }
            '_' if bytes.len() >= i + 7
                && bytes[i + 1] == b'x'
                && bytes[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit)
                && bytes[i + 6] == b'_' =>
            {
                out.push_str("_x005F_")
            }
            c => out.push(c),
        }
    }
}

/// A column's letters: 0 → `A`, 25 → `Z`, 26 → `AA`.
fn column_name(mut c: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

const XLSX_PARTS: [(&str, &str); 5] = [
    (
        "[Content_Types].xml",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>"#,
    ),
    (
        "_rels/.rels",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
    ),
    (
        "xl/workbook.xml",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><bookViews><workbookView/></bookViews><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
    ),
    (
        "xl/_rels/workbook.xml.rels",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#,
    ),
    (
        "xl/styles.xml",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font><font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/><xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>"#,
    ),
];

impl<'a> XlsxStream<'a> {
    fn new(sink: &'a mut Sink, header: &[String]) -> Result<XlsxStream<'a>> {
        let mut zip = zip::ZipWriter::new_stream(sink).set_auto_large_file();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in XLSX_PARTS {
            zip.start_file(name, options).map_err(zip_err)?;
            zip.write_all(text.as_bytes()).map_err(write_err)?;
        }
        Ok(XlsxStream {
            zip,
            header: header.to_vec(),
            first: Some(Vec::new()),
            next: 2,
        })
    }

    /// One row (kept until the first page is complete, then written as it comes).
    fn row(&mut self, row: Zeroizing<Vec<String>>) -> Result<()> {
        if self.next >= XLSX_MAX_ROWS {
            return Err(HoError::TooManyRowsForXlsx(u64::from(self.next)));
        }
        match &mut self.first {
            Some(first) if first.len() < PAGE => {
                first.push(row);
                self.next += 1;
                Ok(())
            }
            Some(_) => {
                self.begin_sheet()?;
                self.row(row)
            }
            None => self
                .write_row(self.next, &row, false)
                .map(|()| self.next += 1),
        }
    }

    /// The sheet's start: the frozen header's view, the column widths, the header row, and
    /// the rows kept so far.
    fn begin_sheet(&mut self) -> Result<()> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        let mut widths: Vec<usize> = self.header.iter().map(|h| display_width(h)).collect();
        for row in &first {
            for (c, v) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(c) {
                    *w = (*w).max(display_width(v));
                }
            }
        }
        let mut head = String::from(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheetViews><sheetView tabSelected="1" workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/><cols>"#,
        );
        for (c, w) in widths.iter().enumerate() {
            let _ = std::fmt::Write::write_fmt(
                &mut head,
                format_args!(
                    r#"<col min="{n}" max="{n}" width="{w}" customWidth="1"/>"#,
                    n = c + 1,
                    w = (*w).clamp(8, 60) as f64 + 2.0
                ),
            );
        }
        head.push_str("</cols><sheetData>");
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        self.zip
            .start_file("xl/worksheets/sheet1.xml", options)
            .map_err(zip_err)?;
        self.zip.write_all(head.as_bytes()).map_err(write_err)?;
        let header = std::mem::take(&mut self.header);
        self.write_row(1, &header, true)?;
        for (i, row) in first.iter().enumerate() {
            self.write_row(i as u32 + 2, row, false)?;
        }
        Ok(())
    }

    fn write_row(&mut self, r: u32, row: &[String], bold: bool) -> Result<()> {
        let mut xml = Zeroizing::new(String::with_capacity(64 * row.len()));
        let _ = std::fmt::Write::write_fmt(&mut *xml, format_args!(r#"<row r="{r}">"#));
        for (c, v) in row.iter().enumerate() {
            // Excel stores no empty strings: an empty value is an empty cell.
            if v.is_empty() {
                continue;
            }
            let _ = std::fmt::Write::write_fmt(
                &mut *xml,
                format_args!(
                    r#"<c r="{}{r}" t="inlineStr"{}><is><t xml:space="preserve">"#,
                    column_name(c),
                    if bold { r#" s="1""# } else { "" }
                ),
            );
            xml_text(v, &mut xml);
            xml.push_str("</t></is></c>");
        }
        xml.push_str("</row>");
        self.zip.write_all(xml.as_bytes()).map_err(write_err)
    }

    /// The sheet's end and the archive's directory.
    fn finish(mut self) -> Result<()> {
        self.begin_sheet()?;
        self.zip
            .write_all(b"</sheetData></worksheet>")
            .map_err(write_err)?;
        self.zip.finish().map_err(zip_err)?;
        Ok(())
    }
}

fn write_err(e: std::io::Error) -> HoError {
    HoError::io("writing the export file")(e)
}

fn zip_err(e: zip::result::ZipError) -> HoError {
    write_err(std::io::Error::other(e))
}

/// Writes one event's entries for the CRM: one row per entry with its consent version and time;
/// values rendered by each field's display policy unless `unmasked`. The file appears complete
/// or not at all (temp file beside it, renamed), never over an existing file. Audited.
pub fn export(
    dir: &Path,
    pass: &crate::Passphrase,
    event: &str,
    format: Format,
    out: &Path,
    unmasked: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport> {
    let options = ExportOptions {
        unmasked,
        ..ExportOptions::default()
    };
    export_with(dir, pass, event, format, out, options, progress)
}

/// [`export`] with its options: besides each field's column, `captured_by` (the staff code's
/// id in promoter mode), and duplicates marked (`duplicate_of`: the earliest entry with the
/// same phone or email) or merged (`merged_entries`).
pub fn export_with(
    dir: &Path,
    pass: &crate::Passphrase,
    event: &str,
    format: Format,
    out: &Path,
    options: ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport> {
    export_to(dir, pass, event, format, Some(out), options, progress).map(|(r, _)| r)
}

/// [`export_with`] into memory: the file's bytes (the console hands them to the browser), never
/// on disk. Audited the same way.
pub fn export_bytes(
    dir: &Path,
    pass: &crate::Passphrase,
    event: &str,
    format: Format,
    options: ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Zeroizing<Vec<u8>>, ExportReport)> {
    let (report, bytes) = export_to(dir, pass, event, format, None, options, progress)?;
    Ok((bytes.unwrap_or_default(), report))
}

/// Where an export goes: a temp file beside the output (renamed into place when complete), or
/// memory.
enum Sink {
    File(tempfile::NamedTempFile),
    Memory(Zeroizing<Vec<u8>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Memory(v) => {
                v.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

fn export_to(
    dir: &Path,
    pass: &crate::Passphrase,
    event: &str,
    format: Format,
    out: Option<&Path>,
    options: ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ExportReport, Option<Zeroizing<Vec<u8>>>)> {
    let unmasked = options.unmasked;
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    if let Some(out) = out.filter(|o| o.exists()) {
        return Err(HoError::OutputExists {
            path: out.display().to_string(),
        });
    }
    let mut store = Store::open(&ho)?;
    let config = store.event(event)?;
    let identity = ho.load_identity(pass)?;
    let mut header: Vec<String> = [
        "entry_id",
        "captured_at",
        "device",
        "consent_version",
        "consent_sha256",
        "captured_by",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(
        config
            .fields
            .iter()
            .map(|f| format!("{} ({} / {})", f.key, f.label.zh, f.label.en)),
    );
    header.extend(["duplicate_of".to_string(), "merged_entries".to_string()]);
    // One row: the entry (or, merged, it and its later twins, oldest first), who captured it,
    // the earliest entry it repeats, the entries merged into it.
    let row_of = |group: &[&Opened], duplicate_of: Option<uuid::Uuid>| -> Zeroizing<Vec<String>> {
        let e = group[0];
        let mut values = crate::duplicates::merge(group.iter().map(|x| &x.payload.values));
        let mut row = vec![
            e.env.id.to_string(),
            time_text(e.env.captured_at_ms),
            e.device.clone(),
            e.env.consent_version.clone(),
            e.env.consent_sha256.clone(),
            group
                .iter()
                .find_map(|x| x.payload.staff_code.clone())
                .unwrap_or_default(),
        ];
        row.extend(config.fields.iter().map(|f| {
            values
                .get(&f.key)
                .map(|v| shown(f.kind, f.display, v, unmasked))
                .unwrap_or_default()
        }));
        for v in values.values_mut() {
            zeroize::Zeroize::zeroize(v);
        }
        row.push(duplicate_of.map(|d| d.to_string()).unwrap_or_default());
        row.push(
            group[1..]
                .iter()
                .map(|x| x.env.id.to_string())
                .collect::<Vec<_>>()
                .join(LIST_SEPARATOR),
        );
        Zeroizing::new(row)
    };
    let csv_line = |row: &[String]| -> Zeroizing<Vec<u8>> {
        let line: Vec<String> = row.iter().map(|c| csv_field(&defuse(c))).collect();
        let mut b = Zeroizing::new(line.join(",").into_bytes());
        b.extend_from_slice(b"\r\n");
        b
    };
    // Unmerged, the file streams: an entry repeating an earlier one (same normalised phone or
    // email) is marked with the earliest such entry, from a map of the contact keys seen so far,
    // kept in memory only and only as digests (the first 128 bits of SHA-256: 32 bytes a key
    // with the entry's id, sized once for the event, so about 70 bytes an entry with a phone and
    // an email, and no copy while it grows). Merged, the event is opened into memory first, so
    // entries linked through a third one join the same row.
    let contact_fields = config
        .fields
        .iter()
        .filter(|f| matches!(f.kind, FieldKind::Phone | FieldKind::Email))
        .count();
    let expected_keys = if options.merge_duplicates {
        0
    } else {
        (store.count_entries(Some(event))? as usize).saturating_mul(contact_fields)
    };
    let mut first_with: std::collections::HashMap<[u8; 16], uuid::Uuid> =
        std::collections::HashMap::with_capacity(expected_keys);
    let mut duplicates = 0usize;
    let mut groups: std::collections::HashSet<uuid::Uuid> = std::collections::HashSet::new();
    let mut mark = |e: &Opened| -> Option<uuid::Uuid> {
        let keys: Vec<[u8; 16]> = crate::duplicates::contact_keys(&config, &e.payload.values)
            .into_iter()
            .map(|k| {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(Zeroizing::new(k).as_bytes());
                let mut short = [0u8; 16];
                short.copy_from_slice(&digest[..16]);
                short
            })
            .collect();
        let earlier = keys.iter().filter_map(|k| first_with.get(k).copied()).min();
        for k in keys {
            first_with.entry(k).or_insert(e.env.id);
        }
        if let Some(d) = earlier {
            duplicates += 1;
            groups.insert(d);
        }
        earlier
    };
    let mut tmp = match out {
        Some(out) => {
            let parent = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Sink::File(
                tempfile::Builder::new()
                    .prefix(".sealbox-export-")
                    .tempfile_in(parent)
                    .map_err(HoError::io("creating the export file"))?,
            )
        }
        None => Sink::Memory(Zeroizing::new(Vec::new())),
    };
    let mut rows = 0usize;
    // CSV lines and XLSX rows are written as they come (the XLSX keeps its first page until
    // its column widths are known); the file never holds more than a page in memory.
    enum Writer<'a> {
        Csv(&'a mut Sink),
        Xlsx(Box<XlsxStream<'a>>),
    }
    impl Writer<'_> {
        fn finish(self) -> Result<()> {
            match self {
                Writer::Xlsx(x) => x.finish(),
                Writer::Csv(_) => Ok(()),
            }
        }
    }
    let mut writer = if format == Format::Csv {
        // UTF-8 with a byte-order mark, so spreadsheet programs read Chinese correctly.
        tmp.write_all(&[0xEF, 0xBB, 0xBF])
            .and_then(|_| tmp.write_all(&csv_line(&header)))
            .map_err(HoError::io("writing the export file"))?;
        Writer::Csv(&mut tmp)
    } else {
        Writer::Xlsx(Box::new(XlsxStream::new(&mut tmp, &header)?))
    };
    let mut emit = |row: Zeroizing<Vec<String>>| -> Result<()> {
        rows += 1;
        match &mut writer {
            Writer::Csv(out) => out
                .write_all(&csv_line(&row))
                .map_err(HoError::io("writing the export file")),
            Writer::Xlsx(x) => x.row(row),
        }
    };
    let unreadable = if options.merge_duplicates {
        let mut entries: Vec<Opened> = Vec::new();
        let bad = for_each_opened(&mut store, &identity, Some(event), progress, &mut |e| {
            entries.push(e);
            Ok(())
        })?;
        let originals = crate::duplicates::originals(
            &entries
                .iter()
                .map(|e| crate::duplicates::contact_keys(&config, &e.payload.values))
                .collect::<Vec<_>>(),
        );
        // Each visitor's entries, oldest first, under their earliest one: one pass.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
        for (i, o) in originals.iter().enumerate() {
            members[*o].push(i);
            if i != *o {
                duplicates += 1;
                groups.insert(entries[*o].env.id);
            }
        }
        for group in members.iter().filter(|m| !m.is_empty()) {
            let group: Vec<&Opened> = group.iter().map(|j| &entries[*j]).collect();
            emit(row_of(&group, None))?;
        }
        bad
    } else {
        for_each_opened(&mut store, &identity, Some(event), progress, &mut |e| {
            let d = mark(&e);
            emit(row_of(&[&e], d))
        })?
    };
    writer.finish()?;
    let bytes = match (tmp, out) {
        (Sink::File(tmp), Some(out)) => {
            tmp.as_file()
                .sync_all()
                .map_err(HoError::io("writing the export file"))?;
            tmp.persist_noclobber(out)
                .map_err(|e| HoError::io(format!("writing {}", out.display()))(e.error))?;
            None
        }
        (Sink::Memory(v), _) => Some(v),
        (Sink::File(_), None) => None,
    };
    quarantine_unreadable(&mut store, &unreadable)?;
    store.audit_append(Audit::new(
        now_ms(),
        "crm.exported",
        serde_json::json!({"event": event, "rows": rows, "unmasked": unmasked,
            "format": if format == Format::Csv { "csv" } else { "xlsx" },
            "duplicates": duplicates, "merged": options.merge_duplicates}),
    ))?;
    tracing::info!(event, rows, unmasked, duplicates, "CRM export written");
    Ok((
        ExportReport {
            rows,
            unmasked,
            duplicates,
            duplicate_groups: groups.len(),
            merged: options.merge_duplicates,
        },
        bytes,
    ))
}

/// How many entries one purge transaction deletes: a large purge holds the write lock for a
/// moment at a time, so syncs go on meanwhile.
const PURGE_CHUNK: usize = 1000;

/// Deletes every entry whose event's retention period has passed at `now_ms` (counted from when
/// it was captured, or from when head office received it when the device's clock was
/// implausible), and the quarantined rows received before then, each with a tombstone so a late
/// delivery is acknowledged and never stored again. Always audited, also when nothing was due.
/// Returns `(event, entries deleted)` for each event.
pub fn purge(dir: &Path, now_ms: i64) -> Result<Vec<(String, u64)>> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let mut store = Store::open(&ho)?;
    let events = store.events()?;
    let mut report = Vec::new();
    for (id, json) in events {
        let config: EventConfig =
            serde_json::from_str(&json).map_err(|e| HoError::Config(e.to_string()))?;
        let cutoff = now_ms - config.consent.retention_days as i64 * 86_400_000;
        let mut n = 0u64;
        loop {
            let ids = store.expired_ids(&id, cutoff, PURGE_CHUNK)?;
            if ids.is_empty() {
                break;
            }
            n += store.delete_with_tombstones(&ids, "retention", now_ms, None)?;
        }
        loop {
            let q = store.purge_quarantine(&id, cutoff, now_ms, PURGE_CHUNK)?;
            if q == 0 {
                break;
            }
            n += q;
        }
        if n > 0 {
            tracing::info!(event = %id, entries = n, "purged at the end of retention");
        }
        report.push((id, n));
    }
    let per_event: serde_json::Map<String, serde_json::Value> = report
        .iter()
        .map(|(e, n)| (e.clone(), serde_json::json!(n)))
        .collect();
    store.audit_append(Audit::new(
        now_ms,
        "retention.purged",
        serde_json::json!({"entries": report.iter().map(|(_, n)| n).sum::<u64>(), "events": per_event}),
    ))?;
    Ok(report)
}

/// Who a deletion request is about.
#[derive(Debug, Clone)]
pub enum Subject {
    Phone(String),
    Email(String),
}

/// Finds a visitor's entries by phone or email (normalised, as devices normalise them),
/// deletes them, and audits the request with a salted hash instead of the value.
pub fn forget(
    dir: &Path,
    pass: &crate::Passphrase,
    subject: &Subject,
    event: Option<&str>,
) -> Result<u64> {
    let Matches {
        mut store,
        identity,
        kind,
        wanted,
        ids: matches,
    } = matching(dir, pass, subject, event)?;
    let digest = subject_digest(&identity, kind, &wanted);
    let now = now_ms();
    store.delete_with_tombstones(
        &matches,
        "deletion_request",
        now,
        Some(Audit::new(
            now,
            "deletion.request",
            serde_json::json!({"subject_hash": digest, "kind": format!("{kind:?}").to_lowercase(), "event": event, "deleted": matches.len()}),
        )),
    )?;
    tracing::info!(deleted = matches.len(), "deletion request answered");
    Ok(matches.len() as u64)
}

/// How many entries a deletion request would delete (the console shows it before the admin
/// confirms); deletes nothing.
pub fn count_matches(
    dir: &Path,
    pass: &crate::Passphrase,
    subject: &Subject,
    event: Option<&str>,
) -> Result<u64> {
    Ok(matching(dir, pass, subject, event)?.ids.len() as u64)
}

/// The entries matching a deletion request's subject, with what deleting them needs.
struct Matches {
    store: Store,
    identity: age::x25519::Identity,
    kind: FieldKind,
    wanted: Zeroizing<String>,
    ids: Vec<uuid::Uuid>,
}

fn matching(
    dir: &Path,
    pass: &crate::Passphrase,
    subject: &Subject,
    event: Option<&str>,
) -> Result<Matches> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let (kind, wanted) = match subject {
        Subject::Phone(p) => (
            FieldKind::Phone,
            normalize_phone(p).ok_or_else(|| {
                HoError::Config("that is not a phone number Sealbox accepts".into())
            })?,
        ),
        Subject::Email(e) => (
            FieldKind::Email,
            normalize_email(e)
                .map(|e| e.to_lowercase())
                .ok_or_else(|| HoError::Config("that is not an email address".into()))?,
        ),
    };
    let wanted = Zeroizing::new(wanted);
    let mut store = Store::open(&ho)?;
    if let Some(e) = event {
        store.event(e)?;
    }
    let identity = ho.load_identity(pass)?;
    let configs: std::collections::HashMap<String, EventConfig> = store
        .events()?
        .into_iter()
        .filter_map(|(id, c)| serde_json::from_str(&c).ok().map(|c| (id, c)))
        .collect();
    // Every entry is opened (a page at a time, on every core); only the ids that match are
    // kept.
    let mut matches: Vec<uuid::Uuid> = Vec::new();
    let unreadable = for_each_opened(&mut store, &identity, event, &mut |_, _| {}, &mut |e| {
        let Some(cfg) = configs.get(&e.env.event_id) else {
            return Ok(());
        };
        let hit = cfg.fields.iter().filter(|f| f.kind == kind).any(|f| {
            match e.payload.values.get(&f.key) {
                Some(FieldValue::Text(v)) => {
                    let norm = match kind {
                        FieldKind::Phone => normalize_phone(v),
                        _ => normalize_email(v).map(|v| v.to_lowercase()),
                    };
                    norm.as_deref() == Some(wanted.as_str())
                }
                _ => false,
            }
        });
        if hit {
            matches.push(e.env.id);
        }
        Ok(())
    })?;
    quarantine_unreadable(&mut store, &unreadable)?;
    Ok(Matches {
        store,
        identity,
        kind,
        wanted,
        ids: matches,
    })
}

/// The audit log's name for a deletion request's subject: HMAC-SHA256 under a key derived from
/// head office's identity, so the database alone (a copy, a backup) cannot test phone numbers
/// against it; head office, holding the identity, can still tell two requests about one person
/// apart from requests about two.
fn subject_digest(identity: &age::x25519::Identity, kind: FieldKind, value: &str) -> String {
    use age::secrecy::ExposeSecret;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let secret = identity.to_string();
    let key = Zeroizing::new(
        Sha256::new()
            .chain_update(b"sealbox/deletion-request-audit/1\0")
            .chain_update(secret.expose_secret().as_bytes())
            .finalize()
            .to_vec(),
    );
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(format!("{kind:?}:{value}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_international_text_and_defusing_is_one_rule() {
        assert_eq!(phone_text("13812345678"), "+86 138 1234 5678");
        assert_eq!(phone_text("+442079460958"), "+44 2079460958");
        assert_eq!(phone_text("+12125550100"), "+1 2125550100");
        assert_eq!(phone_text("+35312345678"), "+353 12345678");
        for v in ["+86 138 1234 5678", "+44****0958", "138****5678"] {
            assert_eq!(defuse(v), v, "phones stay as they are");
        }
        for v in ["+442079460958", "=1+2", "-5", "@SUM(A1)", "+A1", "\tx"] {
            assert_eq!(defuse(v), format!("'{v}"), "{v:?}");
        }
        assert_eq!(time_text(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(time_text(1_700_000_000_120), "2023-11-14T22:13:20.120Z");
    }

    /// A multiple-choice value reads the same in the device's list and in the CRM file.
    #[test]
    fn one_separator_for_multiple_choices() {
        let config = sealbox_protocol::EventConfig::from_json(
            &include_str!("../../../examples/trade-show.json")
                .replace("\"kind\": \"choice\"", "\"kind\": \"multi\""),
        )
        .unwrap();
        let f = config.field("interest").unwrap();
        assert_eq!(f.kind, FieldKind::Multi);
        let a = f.options[0].value.clone();
        let b = f.options[1].value.clone();
        let entry = sealbox_protocol::entry::validate(
            &config,
            &serde_json::json!({"name": "Li", "phone": "13812345678", "interest": [a, b], "consent": true}),
        )
        .unwrap();
        let listed = sealbox_protocol::entry::summary(&config, &entry)["interest"].clone();
        let in_crm = shown(f.kind, f.display, &entry.values()["interest"], false);
        assert_eq!(listed, in_crm);
        assert_eq!(listed, format!("{a}; {b}"));
    }
}
