//! The sync batches in flight, recorded before they are sent, so that a resend after any failure
//! carries the same batch id and head office answers with the same receipt. A sync keeps at most
//! two: the one on the wire and the next one, recorded while the first is answered.

use crate::error::{DeviceError, Result};
use rusqlite::{params, Connection};
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

/// The sync batches in flight, oldest first (the order they were recorded in).
pub fn in_flight(conn: &Connection) -> Result<Vec<Batch>> {
    let mut stmt = conn.prepare_cached("SELECT batch_id, ids FROM outbox ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (b, i) = r?;
        out.push(decode(&b, &i)?);
    }
    Ok(out)
}

/// Records a new sync batch before it is sent, after those already in flight.
pub fn record(conn: &Connection, ids: &[Uuid], at_ms: i64) -> Result<Batch> {
    let batch = Batch {
        id: Uuid::now_v7(),
        ids: ids.to_vec(),
    };
    conn.prepare_cached("INSERT INTO outbox (batch_id, ids, created_at_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![batch.id.to_string(), encode(ids), at_ms])?;
    Ok(batch)
}

/// Forgets a batch in flight: its entries go out again under a new batch id.
pub fn abandon(conn: &Connection, batch_id: Uuid) -> Result<()> {
    conn.prepare_cached("DELETE FROM outbox WHERE batch_id = ?1")?
        .execute([batch_id.to_string()])?;
    Ok(())
}
