//! Erased entries leave nothing in the WAL or the database file: every page and every WAL frame
//! is decrypted here with the database key (SQLCipher 4: AES-256-CBC, a raw key used as is, the
//! IV in each page's reserved tail) and searched for the erased rows' bytes.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
use sealbox_device::files::KEY_ACCOUNT;
use sealbox_device::{Device, KeyStore, OsKeychain};
use sealbox_tests::*;

const PAGE: usize = 4096;
/// SQLCipher 4's reserved tail: a 16-byte IV, then a 64-byte HMAC-SHA512.
const RESERVE: usize = 80;

/// A page's plaintext (page 1's first 16 bytes are the file's salt, kept as they are).
fn decrypt_page(page: &[u8], number: u32, key: &[u8; 32]) -> Vec<u8> {
    let start = if number == 1 { 16 } else { 0 };
    let iv = &page[PAGE - RESERVE..PAGE - RESERVE + 16];
    let mut data = page[start..PAGE - RESERVE].to_vec();
    cbc::Decryptor::<aes::Aes256>::new(key.into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut data)
        .expect("whole blocks");
    data
}

/// Every page of the database file and every frame of its WAL, decrypted.
pub(crate) fn all_pages(dir: &std::path::Path, key: &[u8; 32]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let db = std::fs::read(dir.join("sealbox.db")).unwrap();
    for (i, page) in db.chunks_exact(PAGE).enumerate() {
        let n = i as u32 + 1;
        out.push((format!("db page {n}"), decrypt_page(page, n, key)));
    }
    let wal = std::fs::read(dir.join("sealbox.db-wal")).unwrap_or_default();
    if wal.len() > 32 {
        for (i, frame) in wal[32..].chunks_exact(24 + PAGE).enumerate() {
            let n = u32::from_be_bytes(frame[..4].try_into().unwrap());
            out.push((
                format!("wal frame {i} (page {n})"),
                decrypt_page(&frame[24..], n, key),
            ));
        }
    }
    out
}

/// Where any of `needles` shows in the decrypted pages.
pub(crate) fn found(pages: &[(String, Vec<u8>)], needles: &[Vec<u8>]) -> Vec<String> {
    pages
        .iter()
        .filter(|(_, p)| {
            needles
                .iter()
                .any(|n| p.windows(n.len()).any(|w| w == n.as_slice()))
        })
        .map(|(what, _)| what.clone())
        .collect()
}

/// 32-byte pieces of each entry's stored row (its sealed payload, start and end), unique to it.
fn row_pieces(dev: &Device) -> Vec<Vec<u8>> {
    let mut stmt = dev
        .connection()
        .prepare("SELECT sealed FROM entries")
        .unwrap();
    let rows: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.iter()
        .flat_map(|s| [s[..32].to_vec(), s[s.len() - 32..].to_vec()])
        .collect()
}

/// After a sync whose receipt erases every entry, no database page and no WAL frame holds any
/// of them, and the WAL is empty. Before the sync the same search finds every one (so it would
/// find what lingers).
#[test]
fn erased_entries_leave_no_frame_in_the_wal() {
    let sb = Sandbox::headoffice();
    let server = sealbox_tests::server::HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    // Held open, so that the WAL stays on disk between the commands (the last connection to
    // close would checkpoint and delete it).
    let held = Device::open(&sb.dev, &OsKeychain).unwrap();
    for i in 0..12 {
        sb.add(&crate::store::canary_entry(i));
    }
    let key = OsKeychain
        .get(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap()
        .unwrap();
    let key: [u8; 32] = *key.expose();
    let pieces = row_pieces(&held);
    assert_eq!(pieces.len(), 24);
    let before = all_pages(&sb.dev, &key);
    assert!(
        before.iter().any(|(w, _)| w.starts_with("wal")),
        "the WAL has frames"
    );
    for p in &pieces {
        assert!(
            !found(&before, std::slice::from_ref(p)).is_empty(),
            "every row is found before the erase"
        );
    }

    let out = sb.dev_ok(&["sync", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["erased"], 12, "{out}");
    assert_eq!(sb.pending(), 0);

    let after = all_pages(&sb.dev, &key);
    let hits = found(&after, &pieces);
    assert!(hits.is_empty(), "erased rows still in {hits:?}");
    let wal_len = std::fs::metadata(sb.dev.join("sealbox.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL is truncated after the erase");
    drop(held);
}
