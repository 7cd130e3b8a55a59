//! The recovery kit: head office's age identity split by Shamir's secret sharing (over GF(256),
//! the `blahaj` crate) into `n` shares, any `k` of which rebuild it. `init` writes each share as
//! a file and prints it as one line a person can copy onto paper:
//!
//! ```text
//! SBX1-<head office id>-<k>OF<n>-<share number>-<32 bytes in 8 groups of hex>-<checksum>
//! ```
//!
//! The head office id is derived from the recipient, so a share from another head office is
//! refused before anything is combined, and the rebuilt identity is checked against it. The
//! checksum (SHA-256 of the rest) catches a mistyped or damaged line.

use crate::error::Result;
use crate::keys::{self, HoDir, Passphrase};
use sealbox_protocol::Lang;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

const TAG: &str = "SBX1";
const HRP: &str = "age-secret-key-";

/// Why a recovery did not happen. Nothing was changed on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("recovery share {0} is damaged or mistyped (its checksum does not match); nothing was changed")]
    Damaged(usize),
    #[error("recovery share {0} belongs to another head office; nothing was changed")]
    OtherHeadOffice(usize),
    #[error("{need} different recovery shares are needed, {got} given; nothing was changed")]
    TooFew { need: u8, got: usize },
    #[error("these shares do not rebuild this head office's key (are they from different kits?); nothing was changed")]
    Mismatch,
    #[error("{0} already exists and is not empty; nothing was written")]
    KitExists(String),
    #[error("a recovery kit has 2 to 16 shares, and 2 or more of them rebuild the key")]
    BadKit,
}

impl RecoveryError {
    pub fn code(&self) -> &'static str {
        use RecoveryError::*;
        match self {
            Damaged(_) => "share_damaged",
            OtherHeadOffice(_) => "share_other_head_office",
            TooFew { .. } => "too_few_shares",
            Mismatch => "shares_mismatch",
            KitExists(_) => "kit_exists",
            BadKit => "bad_kit",
        }
    }

    /// The one-line message in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        use RecoveryError::*;
        match lang {
            Lang::En => self.to_string(),
            Lang::Zh => match self {
                Damaged(n) => format!("第 {n} 份恢复分片已损坏或抄错（校验码不符）；未做任何更改"),
                OtherHeadOffice(n) => format!("第 {n} 份恢复分片属于另一个总部；未做任何更改"),
                TooFew { need, got } => {
                    format!("需要 {need} 份不同的恢复分片，只提供了 {got} 份；未做任何更改")
                }
                Mismatch => {
                    "这些分片无法重建本总部的密钥（是否来自不同的恢复套件？）；未做任何更改".into()
                }
                KitExists(p) => format!("{p} 已存在且不为空；未写入任何内容"),
                BadKit => "恢复套件须有 2 至 16 份分片，且至少 2 份才能重建密钥".into(),
            },
        }
    }
}

/// How `init` splits the identity, and where it writes the kit.
#[derive(Debug, Clone)]
pub struct KitOptions {
    /// Shares needed to rebuild (k).
    pub threshold: u8,
    /// Shares made (n).
    pub shares: u8,
    /// A new or empty directory, outside the data directory.
    pub dir: PathBuf,
}

impl KitOptions {
    /// 2 of 3, in `DATA_DIR-recovery-kit` beside the data directory.
    pub fn beside(data_dir: &Path) -> KitOptions {
        let mut name = data_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "sealbox-headoffice".into());
        name.push("-recovery-kit");
        KitOptions {
            threshold: 2,
            shares: 3,
            dir: data_dir.with_file_name(name),
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.threshold < 2 || self.shares < self.threshold || self.shares > 16 {
            return Err(RecoveryError::BadKit.into());
        }
        let non_empty = std::fs::read_dir(&self.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if non_empty {
            return Err(RecoveryError::KitExists(self.dir.display().to_string()).into());
        }
        Ok(())
    }
}

/// The kit `init` wrote: where, and each share's line (secret: print it, never log it).
pub struct Kit {
    pub dir: PathBuf,
    pub ho_id: String,
    pub threshold: u8,
    pub files: Vec<PathBuf>,
    pub lines: Vec<Zeroizing<String>>,
}

impl fmt::Debug for Kit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kit")
            .field("dir", &self.dir)
            .field("ho_id", &self.ho_id)
            .field("threshold", &self.threshold)
            .field("lines", &"[redacted]")
            .finish()
    }
}

/// The identity's 32 secret bytes.
fn identity_bytes(identity: &age::x25519::Identity) -> Result<Zeroizing<Vec<u8>>> {
    use age::secrecy::ExposeSecret;
    use bech32::FromBase32;
    let text = Zeroizing::new(identity.to_string().expose_secret().to_string());
    let (_, data, _) = bech32::decode(&text)
        .map_err(|_| crate::HoError::Crypto("the identity is not bech32".into()))?;
    let bytes = Zeroizing::new(
        Vec::<u8>::from_base32(&data)
            .map_err(|_| crate::HoError::Crypto("the identity is not bech32".into()))?,
    );
    Ok(bytes)
}

fn identity_from_bytes(bytes: &[u8]) -> Option<age::x25519::Identity> {
    use bech32::ToBase32;
    let text = Zeroizing::new(
        bech32::encode(HRP, bytes.to_base32(), bech32::Variant::Bech32)
            .ok()?
            .to_uppercase(),
    );
    age::x25519::Identity::from_str(&text).ok()
}

fn checksum(body: &str) -> String {
    sealbox_protocol::sha256_hex(body.as_bytes())[..8].to_uppercase()
}

/// One share as a line.
fn share_line(ho_id: &str, k: u8, n: u8, share: &blahaj::Share) -> Zeroizing<String> {
    let bytes = Zeroizing::new(Vec::<u8>::from(share));
    let y = Zeroizing::new(hex::encode_upper(&bytes[1..]));
    let groups: Vec<&str> = (0..y.len())
        .step_by(8)
        .map(|i| &y[i..(i + 8).min(y.len())])
        .collect();
    let body = Zeroizing::new(format!(
        "{TAG}-{ho_id}-{k}OF{n}-{}-{}",
        bytes[0],
        groups.join("-")
    ));
    Zeroizing::new(format!("{}-{}", body.as_str(), checksum(&body)))
}

/// A share read back from its line.
struct Parsed {
    ho_id: String,
    k: u8,
    n: u8,
    share: blahaj::Share,
}

fn parse_line(line: &str) -> Option<Parsed> {
    let clean = Zeroizing::new(
        line.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase(),
    );
    let (body, ck) = clean.rsplit_once('-')?;
    if checksum(body) != ck {
        return None;
    }
    let parts: Vec<&str> = body.split('-').collect();
    if parts.len() != 12 || parts[0] != TAG {
        return None;
    }
    let (k, n) = parts[2].split_once("OF")?;
    let (k, n): (u8, u8) = (k.parse().ok()?, n.parse().ok()?);
    let x: u8 = parts[3].parse().ok()?;
    let mut bytes = Zeroizing::new(vec![x]);
    bytes.extend(Zeroizing::new(hex::decode(parts[4..].concat()).ok()?).iter());
    if bytes.len() != 33 || x == 0 {
        return None;
    }
    Some(Parsed {
        ho_id: parts[1].to_string(),
        k,
        n,
        share: blahaj::Share::try_from(bytes.as_slice()).ok()?,
    })
}

/// Splits `identity` into the kit's shares, and checks that the first `k` and the last `k`
/// rebuild it before anything is written.
pub fn split(
    identity: &age::x25519::Identity,
    recipient: &str,
    opts: &KitOptions,
) -> Result<Vec<Zeroizing<String>>> {
    let secret = identity_bytes(identity)?;
    let ho_id = keys::ho_id(recipient);
    let (k, n) = (opts.threshold, opts.shares);
    let lines: Vec<Zeroizing<String>> = blahaj::Sharks(k)
        .dealer(&secret)
        .take(n as usize)
        .map(|s| share_line(&ho_id, k, n, &s))
        .collect();
    for pick in [&lines[..k as usize], &lines[(n - k) as usize..]] {
        let back = combine(pick, Some(&ho_id))?;
        if back.to_public().to_string() != recipient {
            return Err(crate::HoError::Crypto(
                "the recovery shares do not rebuild the key".into(),
            ));
        }
    }
    Ok(lines)
}

/// Writes each share to its own file in the kit directory, with a README.
pub fn write_kit(dir: &Path, lines: &[Zeroizing<String>], opts: &KitOptions) -> Result<Kit> {
    std::fs::create_dir_all(dir)
        .map_err(crate::HoError::io(format!("creating {}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(crate::HoError::io("setting permissions"))?;
    }
    let (k, n) = (opts.threshold, opts.shares);
    let ho_id = parse_line(&lines[0]).map(|p| p.ho_id).unwrap_or_default();
    let mut files = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let text = Zeroizing::new(format!(
            "Sealbox head office recovery share {i} of {n} / 总部恢复分片 第 {i} 份（共 {n} 份）\n\
             Head office / 总部: {ho_id}\n\
             Any {k} shares rebuild head office's key. 任意 {k} 份即可重建总部密钥。\n\
             \n\
             {line}\n\
             \n\
             Keep this share offline, apart from the server and from the other shares.\n\
             请离线保管本分片，不要与服务器或其他分片放在一起。\n\
             To recover / 恢复: sealbox-headoffice identity recover --share FILE --share FILE\n",
            i = i + 1,
            line = line.as_str()
        ));
        let path = dir.join(format!("share-{}-of-{n}.txt", i + 1));
        keys::write_new_private(&path, text.as_bytes())?;
        files.push(path);
    }
    let readme = format!(
        "Sealbox head office recovery kit ({ho_id})\n\
         \n\
         This folder holds {n} shares of head office's key. Any {k} of them rebuild it; fewer\n\
         reveal nothing. Without the key, or the passphrase, every registration is lost.\n\
         \n\
         1. Give each share to a different trusted person (print it, or copy its line onto paper).\n\
         2. Each keeps it offline and apart from the server. Nobody holds {k} shares alone.\n\
         3. Delete this folder from the server once the shares are handed out.\n\
         4. If the passphrase is forgotten or identity.age is lost, {k} holders bring their shares:\n\
         \x20  sealbox-headoffice identity recover --share FILE --share FILE\n\
         \x20  (a share can also be given as its line). It asks for a new passphrase.\n\
         \n\
         总部恢复套件（{ho_id}）\n\
         \n\
         本文件夹含总部密钥的 {n} 份分片，任意 {k} 份即可重建密钥，少于 {k} 份不泄露任何信息。\n\
         1. 将每份分片交给不同的可信人员（打印，或把那一行抄在纸上）。\n\
         2. 每人离线保管，不与服务器放在一起；任何人不得独自持有 {k} 份。\n\
         3. 分发完毕后，从服务器上删除本文件夹。\n\
         4. 若忘记口令或丢失 identity.age，请 {k} 位持有人带来分片并运行上面的命令。\n"
    );
    keys::write_new_private(&dir.join("README.txt"), readme.as_bytes())?;
    keys::sync_dir(dir)?;
    Ok(Kit {
        dir: dir.to_path_buf(),
        ho_id,
        threshold: k,
        files,
        lines: lines.to_vec(),
    })
}

/// Rebuilds the identity from share lines. With `expected_id`, every share must carry it.
/// Shares are numbered from 1 in the order given, for the error messages.
pub fn combine(
    lines: &[Zeroizing<String>],
    expected_id: Option<&str>,
) -> std::result::Result<age::x25519::Identity, RecoveryError> {
    let mut parsed = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        parsed.push(parse_line(line).ok_or(RecoveryError::Damaged(i + 1))?);
    }
    let Some(first) = parsed.first() else {
        return Err(RecoveryError::TooFew { need: 2, got: 0 });
    };
    let id = expected_id
        .map(str::to_string)
        .unwrap_or_else(|| first.ho_id.clone());
    if let Some(i) = parsed.iter().position(|p| p.ho_id != id) {
        return Err(RecoveryError::OtherHeadOffice(i + 1));
    }
    let (k, n) = (first.k, first.n);
    if parsed.iter().any(|p| p.k != k || p.n != n) {
        return Err(RecoveryError::Mismatch);
    }
    let distinct: std::collections::BTreeSet<u8> = parsed.iter().map(|p| p.share.x.0).collect();
    if distinct.len() < k as usize {
        return Err(RecoveryError::TooFew {
            need: k,
            got: distinct.len(),
        });
    }
    let shares: Vec<blahaj::Share> = parsed.into_iter().map(|p| p.share).collect();
    let secret = Zeroizing::new(
        blahaj::Sharks(k)
            .recover(&shares)
            .map_err(|_| RecoveryError::Mismatch)?,
    );
    let identity = identity_from_bytes(&secret).ok_or(RecoveryError::Mismatch)?;
    if keys::ho_id(&identity.to_public().to_string()) != id {
        return Err(RecoveryError::Mismatch);
    }
    Ok(identity)
}

/// A share as given on the command line: its line, or a file holding it (the kit's share file).
pub fn read_share(arg: &str) -> Result<Zeroizing<String>> {
    if arg.trim_start().to_uppercase().starts_with(TAG) {
        return Ok(Zeroizing::new(arg.to_string()));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(arg).map_err(crate::HoError::io(format!("reading {arg}")))?,
    );
    // The line in a share file; else the whole text (then refused as damaged).
    let line = text
        .lines()
        .find(|l| l.trim_start().to_uppercase().starts_with(TAG))
        .unwrap_or(text.as_str());
    Ok(Zeroizing::new(line.to_string()))
}

/// `identity recover`: rebuilds head office's identity from shares and writes `identity.age`
/// under `new_pass`, atomically. Every check comes first; on any error nothing is changed.
pub fn recover(dir: &Path, shares: &[Zeroizing<String>], new_pass: &Passphrase) -> Result<()> {
    let ho = HoDir::new(dir);
    new_pass.check_strength()?;
    let expected = if ho.recipient().exists() {
        Some(ho.id()?)
    } else {
        None
    };
    let identity = combine(shares, expected.as_deref())?;
    if !ho.recipient().exists() {
        std::fs::create_dir_all(dir).map_err(crate::HoError::io("creating the data directory"))?;
        keys::write_atomic(
            &ho.recipient(),
            format!("{}\n", identity.to_public()).as_bytes(),
        )?;
    }
    ho.write_identity(&identity, new_pass)?;
    if let Some(mut store) = crate::store::Store::open_if_present(&ho)? {
        store.audit_append(crate::store::Audit::new(
            crate::now_ms(),
            "identity.recovered",
            serde_json::json!({"shares": shares.len()}),
        ))?;
    }
    tracing::info!("head office's identity was rebuilt from recovery shares");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit(k: u8, n: u8) -> (age::x25519::Identity, String, Vec<Zeroizing<String>>) {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let opts = KitOptions {
            threshold: k,
            shares: n,
            dir: PathBuf::from("/nonexistent"),
        };
        let lines = split(&identity, &recipient, &opts).unwrap();
        (identity, recipient, lines)
    }

    #[test]
    fn any_k_shares_rebuild_and_every_refusal_has_its_own_error() {
        let (identity, recipient, lines) = kit(2, 3);
        let id = keys::ho_id(&recipient);
        for pair in [[0, 1], [1, 2], [2, 0]] {
            let pick: Vec<_> = pair.iter().map(|&i| lines[i].clone()).collect();
            let back = combine(&pick, Some(&id)).unwrap();
            assert_eq!(back.to_public().to_string(), recipient);
        }
        // Written by hand: lower case, spaces.
        let sloppy = Zeroizing::new(lines[0].to_lowercase().replace('-', " - "));
        assert!(combine(&[sloppy, lines[1].clone()], Some(&id)).is_ok());
        // One share, or the same share twice.
        assert_eq!(
            combine(&lines[..1], Some(&id)).err().unwrap(),
            RecoveryError::TooFew { need: 2, got: 1 }
        );
        assert_eq!(
            combine(&[lines[0].clone(), lines[0].clone()], Some(&id))
                .err()
                .unwrap(),
            RecoveryError::TooFew { need: 2, got: 1 }
        );
        // One character changed.
        let mut damaged = lines[1].to_string();
        let pos = damaged.len() / 2;
        let c = if &damaged[pos..=pos] == "A" { "B" } else { "A" };
        damaged.replace_range(pos..=pos, c);
        assert_eq!(
            combine(&[lines[0].clone(), Zeroizing::new(damaged)], Some(&id))
                .err()
                .unwrap(),
            RecoveryError::Damaged(2)
        );
        // A share of another head office.
        let (_, _, others) = kit(2, 3);
        assert_eq!(
            combine(&[lines[0].clone(), others[1].clone()], Some(&id))
                .err()
                .unwrap(),
            RecoveryError::OtherHeadOffice(2)
        );
        assert_eq!(
            combine(&[others[0].clone(), others[1].clone()], Some(&id))
                .err()
                .unwrap(),
            RecoveryError::OtherHeadOffice(1)
        );
        // Every error has a Chinese line of its own.
        for e in [
            RecoveryError::Damaged(2),
            RecoveryError::OtherHeadOffice(1),
            RecoveryError::TooFew { need: 2, got: 1 },
            RecoveryError::Mismatch,
        ] {
            let zh = e.message(Lang::Zh);
            assert!(zh.contains("未做任何更改") && !zh.contains('\n'), "{zh}");
        }
        drop(identity);
    }

    #[test]
    fn three_of_five() {
        let (_, recipient, lines) = kit(3, 5);
        let id = keys::ho_id(&recipient);
        assert_eq!(
            combine(&[lines[0].clone(), lines[4].clone()], Some(&id))
                .err()
                .unwrap(),
            RecoveryError::TooFew { need: 3, got: 2 }
        );
        let back = combine(
            &[lines[4].clone(), lines[1].clone(), lines[2].clone()],
            Some(&id),
        );
        assert_eq!(back.unwrap().to_public().to_string(), recipient);
    }
}
