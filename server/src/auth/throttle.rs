//! A bound on anonymous sign-in starts. Each `GET /auth/login` stores a
//! pending sign-in row (state, nonce, PKCE verifier) that lives fifteen
//! minutes, so an anonymous flood would otherwise fill the table. Counted
//! per client address and per instance in fixed one-minute windows, in
//! memory: the limit exists to protect this instance's writes, and a
//! shared counter would itself be a write per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered in one window at most; past this, new addresses
/// are refused until the window ends (a flood from many addresses).
const MAX_ADDRESSES: usize = 50_000;

pub struct SignInThrottle {
    per_address: u32,
    per_instance: u32,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

impl SignInThrottle {
    pub fn new(per_address: u32, per_instance: u32) -> SignInThrottle {
        SignInThrottle {
            per_address,
            per_instance,
            window: Mutex::new(Window {
                started: Instant::now(),
                total: 0,
                by_address: HashMap::new(),
            }),
        }
    }

    /// Counts a sign-in start from `address`; `Err(seconds)` when it is
    /// over a limit, with the time until the window ends.
    pub fn admit(&self, address: IpAddr) -> Result<(), u64> {
        let Ok(mut w) = self.window.lock() else {
            return Ok(());
        };
        let elapsed = w.started.elapsed().as_secs();
        if elapsed >= 60 {
            w.started = Instant::now();
            w.total = 0;
            w.by_address.clear();
        }
        let retry_after = 60u64.saturating_sub(elapsed % 60).max(1);
        let known = w.by_address.contains_key(&address);
        if w.total >= self.per_instance || (!known && w.by_address.len() >= MAX_ADDRESSES) {
            return Err(retry_after);
        }
        let count = w.by_address.entry(address).or_insert(0);
        if *count >= self.per_address {
            return Err(retry_after);
        }
        *count += 1;
        w.total += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_and_the_instance_have_their_own_limit() {
        let throttle = SignInThrottle::new(2, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(throttle.admit(a).is_ok());
        assert!(throttle.admit(a).is_ok());
        let retry = throttle.admit(a).unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(throttle.admit(b).is_ok(), "another address still may");
        assert!(
            throttle.admit(b).is_err(),
            "the instance's limit is reached"
        );
    }
}
