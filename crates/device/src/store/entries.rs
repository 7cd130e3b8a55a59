//! The one home of an entry's states on the device, and of every statement that changes them.
//!
//! ```text
//!            add                 sync: in a batch (outbox)        verified receipt
//!  (none) ───────▶ pending ─────────────────────────────────────────────────▶ erased
//!                   │  ▲ │ export: a batch file                              (tombstone)
//!                   │  │ └──────────▶ exported ──────────────────────────────▶   ▲
//!                   │  └─ (a later sync or export takes it again)                 │
//!                   └── head office refuses it on its own ──▶ quarantined ────────┘
//!                        (kept encrypted, reported, exported in batch files; erased only
//!                         with a receipt that lists it)
//! ```
//! An entry leaves this table in exactly one place, [`erase_acknowledged`], and only for ids a
//! verified receipt lists.

use crate::error::{DeviceError, Result};
use rusqlite::{params, Connection, OptionalExtension};
use sealbox_protocol::EntryEnvelope;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Where an entry still on the device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Waiting for head office (it may be in a sync batch right now).
    Pending,
    /// In a batch file a manager carries; still here until its receipt comes back.
    Exported,
    /// Head office refused it on its own: kept encrypted and reported, no longer blocking the
    /// others; it goes into batch files so head office can look at it.
    Quarantined,
}

impl EntryState {
    /// The name used in `--json` output and by the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Exported => "exported",
            EntryState::Quarantined => "quarantined",
        }
    }
}

impl std::fmt::Display for EntryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row to insert: the envelope and its display summary (JSON), sealed to the summary key.
pub struct NewEntry<'a> {
    pub envelope: &'a EntryEnvelope,
    pub summary_sealed: &'a [u8],
}

pub fn insert(conn: &Connection, e: &NewEntry<'_>) -> Result<()> {
    let env = e.envelope;
    conn.prepare_cached(
        "INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary, summary_sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7)",
    )?
    .execute(params![
        env.id.to_string(),
        env.event_id,
        env.captured_at_ms,
        env.consent_version,
        env.consent_sha256,
        env.sealed,
        e.summary_sealed,
    ])?;
    Ok(())
}

/// Entries stored before summaries were sealed (schema 4 and older), with their plain summary.
pub fn plain_summaries(conn: &Connection) -> Result<Vec<(Uuid, Zeroizing<String>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, summary FROM entries WHERE summary <> ''")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Zeroizing::new(r.get::<_, String>(1)?),
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (id, summary) = r?;
        out.push((parse_id(&id)?, summary));
    }
    Ok(out)
}

/// Replaces an entry's plain summary with its sealed form (`secure_delete` zeroes the old text).
pub fn set_sealed_summary(conn: &Connection, id: Uuid, sealed: &[u8]) -> Result<()> {
    conn.prepare_cached("UPDATE entries SET summary = '', summary_sealed = ?1 WHERE id = ?2")?
        .execute(params![sealed, id.to_string()])?;
    Ok(())
}

fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| DeviceError::Corrupt)
}

fn ids_from(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<Uuid>> {
    let rows = stmt.query_map(p, |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(parse_id(&r?)?);
    }
    Ok(out)
}

/// The envelopes of the oldest entries a sync may send (pending or exported, never
/// quarantined) whose ids come after `after` (none: from the first), at most `limit`, in id
/// order: one pass over the rows.
pub fn sendable_envelopes_after(
    conn: &Connection,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<EntryEnvelope>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed
         FROM entries WHERE quarantine_code IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
    )?;
    // Ids are stored in their hyphenated lower-case form, whose text order is the ids' order;
    // every id sorts after ''.
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    envelopes_from(
        &mut stmt,
        params![after, limit.min(i64::MAX as usize) as i64],
    )
}

/// How many entries a sync may send (pending or exported, not quarantined), from the indexes
/// alone: the primary key's, less the quarantined entries' partial index.
pub const COUNT_SENDABLE_SQL: &str = "SELECT (SELECT count(*) FROM entries)
     - (SELECT count(*) FROM entries WHERE quarantine_code IS NOT NULL)";

/// How many entries a sync may send: [`COUNT_SENDABLE_SQL`].
pub fn count_sendable_all(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(COUNT_SENDABLE_SQL)?
        .query_row([], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// How many of `ids` are still on the device and sendable (not quarantined).
pub fn count_sendable(conn: &Connection, ids: &[Uuid]) -> Result<usize> {
    count_each(
        conn,
        "SELECT count(*) FROM entries WHERE id = ?1 AND quarantine_code IS NULL",
        ids,
    )
}

/// Runs a `count(*)` query that takes one id, for each of `ids`, and sums.
fn count_each(conn: &Connection, sql: &str, ids: &[Uuid]) -> Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut n = 0usize;
    for id in ids {
        n += stmt.query_row([id.to_string()], |r| r.get::<_, i64>(0))? as usize;
    }
    Ok(n)
}

/// The entries still on the device, quarantined ones included, oldest first, at most `limit`:
/// what a batch file carries.
pub fn all_envelopes(conn: &Connection, limit: usize) -> Result<Vec<EntryEnvelope>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed
         FROM entries ORDER BY id LIMIT ?1",
    )?;
    envelopes_from(&mut stmt, [limit.min(i64::MAX as usize) as i64])
}

/// The envelopes a query of `id, event_id, captured_at_ms, consent_version, consent_sha256,
/// sealed` returns.
fn envelopes_from(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<EntryEnvelope>> {
    let rows = stmt.query_map(p, |r| {
        Ok((
            r.get::<_, String>(0)?,
            EntryEnvelope {
                id: Uuid::nil(),
                event_id: r.get(1)?,
                captured_at_ms: r.get(2)?,
                consent_version: r.get(3)?,
                consent_sha256: r.get(4)?,
                sealed: r.get(5)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (id, mut e) = r?;
        e.id = parse_id(&id)?;
        out.push(e);
    }
    Ok(out)
}

/// The envelopes of `ids`, in that order. Every id must be on the device.
pub fn envelopes(conn: &Connection, ids: &[Uuid]) -> Result<Vec<EntryEnvelope>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, captured_at_ms, consent_version, consent_sha256, sealed FROM entries WHERE id = ?1",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let e = stmt.query_row([id.to_string()], |r| {
            Ok(EntryEnvelope {
                id: *id,
                event_id: r.get(0)?,
                captured_at_ms: r.get(1)?,
                consent_version: r.get(2)?,
                consent_sha256: r.get(3)?,
                sealed: r.get(4)?,
            })
        })?;
        out.push(e);
    }
    Ok(out)
}

/// Marks `ids` as carried in the batch file `batch_id`.
pub fn mark_exported(conn: &Connection, ids: &[Uuid], batch_id: Uuid, at_ms: i64) -> Result<()> {
    let mut mark = conn.prepare_cached(
        "UPDATE entries SET exported_batch = ?1, exported_at_ms = ?2 WHERE id = ?3",
    )?;
    for id in ids {
        mark.execute(params![batch_id.to_string(), at_ms, id.to_string()])?;
    }
    Ok(())
}

/// Quarantines one entry with head office's reason code. Returns whether it was on the device
/// and not quarantined already.
pub fn quarantine(conn: &Connection, id: Uuid, code: &str, at_ms: i64) -> Result<bool> {
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    let n = conn
        .prepare_cached(
            "UPDATE entries SET quarantine_code = ?1, quarantined_at_ms = ?2
             WHERE id = ?3 AND quarantine_code IS NULL",
        )?
        .execute(params![
            if code.is_empty() { "refused" } else { &code },
            at_ms,
            id.to_string()
        ])?;
    Ok(n == 1)
}

/// Which of `ids` are on the device.
pub fn present(conn: &Connection, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached("SELECT count(*) FROM entries WHERE id = ?1")?;
    let mut out = Vec::new();
    for id in ids {
        if stmt.query_row([id.to_string()], |r| r.get::<_, i64>(0))? > 0 {
            out.push(*id);
        }
    }
    Ok(out)
}

/// How many of `ids` have a tombstone (were erased after a receipt).
pub fn count_tombstoned(conn: &Connection, ids: &[Uuid]) -> Result<usize> {
    count_each(conn, "SELECT count(*) FROM tombstones WHERE id = ?1", ids)
}

/// Erases `ids` (secure_delete zeroes their pages) and leaves a tombstone for each, inside the
/// caller's transaction. The only place an entry leaves the device: call it only with ids that a
/// verified receipt lists.
pub fn erase_acknowledged(
    tx: &rusqlite::Transaction<'_>,
    ids: &[Uuid],
    receipt_id: &str,
    at_ms: i64,
) -> Result<u64> {
    let mut del = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
    let mut tomb = tx.prepare_cached(
        "INSERT OR IGNORE INTO tombstones (id, acknowledged_at_ms, receipt_id) VALUES (?1, ?2, ?3)",
    )?;
    let mut erased = 0;
    for id in ids {
        let s = id.to_string();
        erased += del.execute([&s])? as u64;
        tomb.execute(params![s, at_ms, receipt_id])?;
    }
    Ok(erased)
}

/// Counts for `status` and the manager's overview: never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Waiting for head office (not in a batch file, not quarantined).
    pub pending: u64,
    /// In a batch file, waiting for its receipt.
    pub exported: u64,
    /// Refused by head office on their own: kept encrypted, reported.
    pub refused: u64,
    /// Erased after a verified receipt (tombstones).
    pub erased: u64,
    /// When the oldest entry still on the device was captured.
    pub oldest_waiting_ms: Option<i64>,
}

pub fn counts(conn: &Connection) -> Result<Counts> {
    let (pending, exported, refused, oldest): (i64, i64, i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE quarantine_code IS NULL AND exported_batch IS NULL),
                    count(*) FILTER (WHERE quarantine_code IS NULL AND exported_batch IS NOT NULL),
                    count(*) FILTER (WHERE quarantine_code IS NOT NULL),
                    min(captured_at_ms)
             FROM entries",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let erased: i64 = conn
        .prepare_cached("SELECT count(*) FROM tombstones")?
        .query_row([], |r| r.get(0))?;
    Ok(Counts {
        pending: pending as u64,
        exported: exported as u64,
        refused: refused as u64,
        erased: erased as u64,
        oldest_waiting_ms: oldest,
    })
}

/// Capture times of the entries on the device, oldest first (times only).
pub fn capture_times(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT captured_at_ms FROM entries ORDER BY captured_at_ms")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids of the tombstones (a UUIDv7 carries its capture time).
pub fn tombstone_ids(conn: &Connection) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM tombstones")?;
    ids_from(&mut stmt, [])
}

/// One entry as a manager sees it: its display summary, never its sealed values.
#[derive(Debug, Clone, Serialize)]
pub struct ListedEntry {
    pub id: Uuid,
    pub captured_at_ms: i64,
    pub state: EntryState,
    /// Head office's reason code, for a quarantined entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_code: Option<String>,
    pub summary: BTreeMap<String, String>,
}

/// Opens a sealed summary: its JSON, or `None` without the key.
pub type OpenSummary<'a> = &'a dyn Fn(&[u8]) -> Option<Zeroizing<Vec<u8>>>;

/// The newest `limit` entries with their summaries, opened by `open` (an empty summary for one it
/// cannot open).
pub fn list(conn: &Connection, limit: usize, open: OpenSummary<'_>) -> Result<Vec<ListedEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, captured_at_ms, summary, exported_batch IS NOT NULL, quarantine_code, summary_sealed
         FROM entries ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit.min(i64::MAX as usize) as i64], |r| {
        let plain = Zeroizing::new(r.get::<_, String>(2)?);
        let sealed: Option<Vec<u8>> = r.get(5)?;
        let summary = match sealed {
            Some(s) if plain.is_empty() => open(&s)
                .and_then(|j| String::from_utf8(j.to_vec()).ok())
                .map(Zeroizing::new)
                .unwrap_or_default(),
            _ => plain,
        };
        let code: Option<String> = r.get(4)?;
        Ok((
            r.get::<_, String>(0)?,
            ListedEntry {
                id: Uuid::nil(),
                captured_at_ms: r.get(1)?,
                state: match (&code, r.get::<_, bool>(3)?) {
                    (Some(_), _) => EntryState::Quarantined,
                    (None, true) => EntryState::Exported,
                    (None, false) => EntryState::Pending,
                },
                refused_code: code,
                summary: serde_json::from_str(&summary).unwrap_or_default(),
            },
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (id, mut e) = r?;
        e.id = parse_id(&id)?;
        out.push(e);
    }
    Ok(out)
}

/// Whether an entry with this id is on the device.
pub fn exists(conn: &Connection, id: Uuid) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM entries WHERE id = ?1")?
        .query_row([id.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}
