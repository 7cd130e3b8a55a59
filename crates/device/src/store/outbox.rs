//! The sync batch in flight (at most one), recorded before it is sent, so that a resend after
//! any failure carries the same batch id and head office answers with the same receipt.

use crate::error::{DeviceError, Result};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

/// A batch and the ids it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: Uuid,
    pub ids: Vec<Uuid>,
}

fn decode(batch: &str, ids: &str) -> Result<Batch> {
    Ok(Batch {
        id: Uuid::parse_str(batch).map_err(|_| DeviceError::Corrupt)?,
        ids: serde_json::from_str(ids).map_err(|_| DeviceError::Corrupt)?,
    })
}

fn encode(ids: &[Uuid]) -> String {
    // A list of UUIDs always serializes.
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// The sync batch in flight, if one was recorded and not yet answered.
pub fn in_flight(conn: &Connection) -> Result<Option<Batch>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT batch_id, ids FROM outbox LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(b, i)| decode(&b, &i)).transpose()
}

/// Records a new sync batch before it is sent (replacing any other).
pub fn record(conn: &Connection, ids: &[Uuid], at_ms: i64) -> Result<Batch> {
    let batch = Batch {
        id: Uuid::now_v7(),
        ids: ids.to_vec(),
    };
    conn.execute("DELETE FROM outbox", [])?;
    conn.execute(
        "INSERT INTO outbox (batch_id, ids, created_at_ms) VALUES (?1, ?2, ?3)",
        params![batch.id.to_string(), encode(ids), at_ms],
    )?;
    Ok(batch)
}

/// Forgets the batch in flight: its entries go out again under a new batch id.
pub fn abandon(conn: &Connection, batch_id: Uuid) -> Result<()> {
    conn.execute(
        "DELETE FROM outbox WHERE batch_id = ?1",
        [batch_id.to_string()],
    )?;
    Ok(())
}
