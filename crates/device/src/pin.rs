//! The manager PIN: stored as an Argon2id hash; after three wrong PINs in a row every further
//! attempt must wait, 30 s doubling to at most 15 minutes. Every attempt is audited.
//!
//! The waits are measured, where the OS offers it, on the kernel's time since boot (Linux:
//! `/proc/uptime` with the boot's id), which neither setting the wall clock nor faking a
//! process's clock (faketime) moves. Across a reboot, or without it, the wall clock serves, and
//! a wall clock that went back counts as no time passed: the wait starts again from now, so a
//! wrong clock can cost the manager at most one wait, never shorten one.

use crate::error::{DeviceError, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A manager PIN as typed: zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin(String);

impl Pin {
    pub fn new(s: impl Into<String>) -> Self {
        Pin(s.into())
    }
    fn as_bytes(&self) -> &[u8] {
        self.0.trim().as_bytes()
    }
    /// The PIN's bytes, for key derivation.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Wrong attempts allowed before waiting starts.
pub const FREE_ATTEMPTS: u32 = 3;
const FIRST_WAIT_MS: i64 = 30_000;
const MAX_WAIT_MS: i64 = 15 * 60_000;

/// Refuses PINs that are short, not digits, or trivial (all one digit, a straight run).
pub fn check_strength(pin: &Pin) -> Result<()> {
    let d = pin.as_bytes();
    let digits = (6..=12).contains(&d.len()) && d.iter().all(u8::is_ascii_digit);
    if !digits {
        return Err(DeviceError::PinWeak);
    }
    let same = d.iter().all(|&c| c == d[0]);
    let up = d.windows(2).all(|w| w[1] == w[0] + 1);
    let down = d.windows(2).all(|w| w[0] == w[1] + 1);
    if same || up || down {
        return Err(DeviceError::PinWeak);
    }
    Ok(())
}

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes): the PIN's hash and the key that
/// wraps the summary key (see [`crate::summary`]) both cost this per guess.
pub(crate) fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The PHC string of a new PIN.
pub fn hash(pin: &Pin) -> Result<String> {
    let mut salt_bytes = [0u8; 16];
    getrandom::getrandom(&mut salt_bytes).map_err(|e| DeviceError::Seal(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| DeviceError::Seal(e.to_string()))?;
    argon2()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DeviceError::Seal(e.to_string()))
}

/// Whether `pin` matches the PHC string.
pub fn matches(pin: &Pin, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(pin.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// The time since boot, and which boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootClock {
    pub boot_id: String,
    pub since_boot_ms: i64,
}

/// A moment as the rate limiter reads it: the wall clock and, where there is one, the boot clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub wall_ms: i64,
    pub boot: Option<BootClock>,
}

impl Moment {
    pub fn now() -> Moment {
        Moment {
            wall_ms: crate::now_ms(),
            boot: boot_clock(),
        }
    }
}

/// Linux: `/proc/uptime` (seconds since boot, suspend included) and the boot's random id, both
/// read from the kernel rather than through the C library's clock functions.
#[cfg(target_os = "linux")]
fn boot_clock() -> Option<BootClock> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let up = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = up.split_whitespace().next()?.parse().ok()?;
    Some(BootClock {
        boot_id: id.trim().to_string(),
        since_boot_ms: (secs * 1000.0) as i64,
    })
}

#[cfg(not(target_os = "linux"))]
fn boot_clock() -> Option<BootClock> {
    None
}

/// The rate limiter's state, kept in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempts {
    /// Wrong PINs in a row.
    pub failures: u32,
    /// Wall-clock time of the last wrong PIN.
    pub last_failure_ms: i64,
    /// The boot it happened in, and its time since that boot.
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub last_failure_boot_ms: Option<i64>,
}

impl Attempts {
    /// The state after one more wrong PIN at `now`.
    pub fn failed(&self, now: &Moment) -> Attempts {
        Attempts {
            failures: self.failures + 1,
            last_failure_ms: now.wall_ms,
            boot_id: now.boot.as_ref().map(|b| b.boot_id.clone()),
            last_failure_boot_ms: now.boot.as_ref().map(|b| b.since_boot_ms),
        }
    }

    /// Time since the last wrong PIN: on the boot clock within the same boot, else on the wall
    /// clock, where a clock behind the last failure means no time passed.
    fn elapsed_ms(&self, now: &Moment) -> i64 {
        match (&self.boot_id, self.last_failure_boot_ms, &now.boot) {
            (Some(id), Some(at), Some(b)) if *id == b.boot_id => (b.since_boot_ms - at).max(0),
            _ => (now.wall_ms - self.last_failure_ms).max(0),
        }
    }

    /// When the wall clock is behind the last failure and no boot clock can be compared, the
    /// wait is anchored at `now` instead (in this boot): it then runs out in real time, so a
    /// clock set back a year does not lock the manager out for a year. `None`: nothing to move.
    pub fn reanchored(&self, now: &Moment) -> Option<Attempts> {
        let same_boot = matches!((&self.boot_id, self.last_failure_boot_ms, &now.boot),
            (Some(id), Some(_), Some(b)) if *id == b.boot_id);
        (self.failures > 0 && !same_boot && now.wall_ms < self.last_failure_ms).then(|| Attempts {
            failures: self.failures,
            ..Attempts::default().failed(now)
        })
    }

    /// How long, from `now`, until the next attempt may be made (0: now).
    pub fn wait_ms(&self, now: &Moment) -> i64 {
        if self.failures < FREE_ATTEMPTS {
            return 0;
        }
        let doublings = (self.failures - FREE_ATTEMPTS).min(10);
        let wait = (FIRST_WAIT_MS << doublings).min(MAX_WAIT_MS);
        (wait - self.elapsed_ms(now)).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength() {
        for weak in [
            "12345",
            "123456",
            "654321",
            "111111",
            "12a456",
            "1234567890123",
        ] {
            assert!(check_strength(&Pin::new(weak)).is_err(), "{weak}");
        }
        assert!(check_strength(&Pin::new("246810")).is_ok());
        assert_eq!(format!("{:?}", Pin::new("246810")), "[redacted]");
    }

    #[test]
    fn hash_and_match() {
        let h = hash(&Pin::new("246810")).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(matches(&Pin::new("246810"), &h));
        assert!(!matches(&Pin::new("246811"), &h));
        assert!(!matches(&Pin::new("246810"), "garbage"));
    }

    fn wall(ms: i64) -> Moment {
        Moment {
            wall_ms: ms,
            boot: None,
        }
    }

    fn booted(wall_ms: i64, boot: &str, since_boot_ms: i64) -> Moment {
        Moment {
            wall_ms,
            boot: Some(BootClock {
                boot_id: boot.into(),
                since_boot_ms,
            }),
        }
    }

    #[test]
    fn waits_grow_and_cap() {
        let a = |failures| Attempts {
            failures,
            last_failure_ms: 1_000,
            ..Attempts::default()
        };
        assert_eq!(a(2).wait_ms(&wall(1_000)), 0);
        assert_eq!(a(3).wait_ms(&wall(1_000)), 30_000);
        assert_eq!(a(4).wait_ms(&wall(1_000)), 60_000);
        assert_eq!(a(3).wait_ms(&wall(31_000)), 0);
        assert_eq!(a(30).wait_ms(&wall(1_000)), 15 * 60_000);
    }

    /// Within one boot the wall clock does not count: set forward a day or back a day, the
    /// wait is what the boot clock says.
    #[test]
    fn within_a_boot_the_wall_clock_is_ignored() {
        let day = 86_400_000;
        let mut a = Attempts::default();
        for _ in 0..3 {
            a = a.failed(&booted(10 * day, "b1", 5_000));
        }
        assert_eq!(a.wait_ms(&booted(11 * day, "b1", 5_000)), 30_000);
        assert_eq!(a.wait_ms(&booted(9 * day, "b1", 15_000)), 20_000);
        assert_eq!(a.wait_ms(&booted(9 * day, "b1", 35_000)), 0);
        assert_eq!(a.reanchored(&booted(9 * day, "b1", 6_000)), None);
        // Failures recorded under a clock set back do not run out when it is put right.
        let mut b = Attempts::default();
        for _ in 0..3 {
            b = b.failed(&booted(9 * day, "b1", 5_000));
        }
        assert_eq!(b.wait_ms(&booted(10 * day, "b1", 6_000)), 29_000);
    }

    /// After a reboot (or without a boot clock) the wall clock counts, and a clock behind the
    /// last failure re-anchors the wait at now: one full wait at most, never a shorter one.
    #[test]
    fn across_boots_a_clock_set_back_costs_one_wait_at_most() {
        let day = 86_400_000;
        let mut a = Attempts::default();
        for _ in 0..4 {
            a = a.failed(&booted(10 * day, "b1", 5_000));
        }
        assert_eq!(a.wait_ms(&booted(10 * day + 20_000, "b2", 1_000)), 40_000);
        let back = booted(9 * day, "b2", 1_000);
        assert_eq!(a.wait_ms(&back), 60_000, "no time passed");
        let moved = a.reanchored(&back).expect("re-anchored");
        assert_eq!(moved.failures, 4);
        assert_eq!(moved.wait_ms(&booted(9 * day, "b2", 31_000)), 30_000);
        assert_eq!(moved.wait_ms(&booted(9 * day, "b2", 61_000)), 0);
        // Without any boot clock, the same.
        let mut w = Attempts::default();
        for _ in 0..3 {
            w = w.failed(&wall(10 * day));
        }
        let moved = w.reanchored(&wall(9 * day)).unwrap();
        assert_eq!(moved.wait_ms(&wall(9 * day + 10_000)), 20_000);
        assert_eq!(w.reanchored(&wall(10 * day + 1)), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_boot_clock_is_read() {
        let b = boot_clock().expect("/proc/uptime and boot_id");
        assert_eq!(b.boot_id.len(), 36);
        assert!(b.since_boot_ms > 0);
    }
}
