//! A bound on anonymous sign-in starts. Each `GET /auth/login` stores a
//! pending sign-in row (state, nonce, PKCE verifier) that lives fifteen
//! minutes, so an anonymous flood would otherwise fill the table. Counted
//! per client and per instance in fixed one-minute windows, in memory: the
//! limit exists to protect this instance's writes, and a shared counter
//! would itself be a write per request.
//!
//! A client is an IPv4 address or an IPv6 /64 (one host may use any
//! address of its network's prefix); its network (IPv4 /24, IPv6 /48) has
//! a limit of its own, so addresses spread over one site are one flood.
//! When the instance's limit is reached,
//! the busiest clients are shed, not everyone: a client that has started
//! fewer than [`LIGHT`] sign-ins this minute still may, up to as many
//! again as the limit, so a flood from a few networks does not lock out
//! the people signing in meanwhile.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Clients remembered in one window at most; past this, new clients are
/// refused until the window ends (a flood from very many addresses).
const MAX_ADDRESSES: usize = 50_000;

/// Sign-ins this minute below which a client still gets in when the
/// instance's limit is reached (a person retrying counts a few).
const LIGHT: u32 = 3;

/// A network (IPv4 /24, IPv6 /48: what one customer or site usually holds)
/// may start this many times a client's limit per minute, and counts as
/// light past the instance's limit only below this many times `LIGHT`: a
/// flood spread over a network's many addresses is one flood.
const NETWORK_FACTOR: u32 = 4;

pub struct SignInThrottle {
    per_address: u32,
    per_instance: u32,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    total: u32,
    /// Admitted past the instance's limit, for light clients.
    overflow: u32,
    by_client: HashMap<IpAddr, u32>,
    by_network: HashMap<IpAddr, u32>,
}

/// The network a client is in: its IPv4 /24 or IPv6 /48.
pub fn network_key(address: IpAddr) -> IpAddr {
    match client_key(address) {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
    }
}

/// Who counts as one client: the IPv4 address (also when written as an
/// IPv4-mapped IPv6 one), or the IPv6 address's /64.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

impl SignInThrottle {
    pub fn new(per_address: u32, per_instance: u32) -> SignInThrottle {
        SignInThrottle {
            per_address,
            per_instance,
            window: Mutex::new(Window {
                started: Instant::now(),
                total: 0,
                overflow: 0,
                by_client: HashMap::new(),
                by_network: HashMap::new(),
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
            w.overflow = 0;
            w.by_client.clear();
            w.by_network.clear();
        }
        let retry_after = 60u64.saturating_sub(elapsed % 60).max(1);
        let client = client_key(address);
        let count = w.by_client.get(&client).copied();
        if count.is_none() && w.by_client.len() >= MAX_ADDRESSES {
            return Err(retry_after);
        }
        let count = count.unwrap_or(0);
        let network = network_key(address);
        let in_network = w.by_network.get(&network).copied().unwrap_or(0);
        if count >= self.per_address
            || in_network >= self.per_address.saturating_mul(NETWORK_FACTOR)
        {
            return Err(retry_after);
        }
        if w.total >= self.per_instance {
            // Over the limit: only light clients of light networks, within
            // an overflow as large as the limit itself.
            if count >= LIGHT
                || in_network >= LIGHT * NETWORK_FACTOR
                || w.overflow >= self.per_instance
            {
                return Err(retry_after);
            }
            w.overflow += 1;
        } else {
            w.total += 1;
        }
        *w.by_client.entry(client).or_insert(0) += 1;
        *w.by_network.entry(network).or_insert(0) += 1;
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
        // The instance's limit (3) is reached: b is light and still gets
        // in; a is not.
        assert!(throttle.admit(a).is_err());
        assert!(throttle.admit(b).is_ok(), "light clients pass the limit");
    }

    #[test]
    fn past_the_instance_limit_the_busiest_clients_are_shed_not_everyone() {
        let throttle = SignInThrottle::new(20, 60);
        let flooders: Vec<IpAddr> = (1..=3)
            .map(|i| format!("198.51.100.{i}").parse().unwrap())
            .collect();
        for f in &flooders {
            for _ in 0..20 {
                assert!(throttle.admit(*f).is_ok());
            }
        }
        for f in &flooders {
            assert!(throttle.admit(*f).is_err(), "at their own limit");
        }
        let person: IpAddr = "192.0.2.7".parse().unwrap();
        for attempt in 0..LIGHT {
            assert!(throttle.admit(person).is_ok(), "attempt {attempt}");
        }
        assert!(throttle.admit(person).is_err(), "no longer light");
        // Many fresh clients use up the overflow, which is bounded.
        let admitted = (0..200u32)
            .filter(|i| {
                let a: IpAddr = format!("10.{}.{}.1", i / 250, i % 250).parse().unwrap();
                throttle.admit(a).is_ok()
            })
            .count();
        assert_eq!(
            admitted as u32,
            60 - LIGHT,
            "the overflow is as large as the limit"
        );
    }

    #[test]
    fn a_flood_spread_over_one_network_is_one_flood() {
        let throttle = SignInThrottle::new(20, 600);
        // Every /64 of one /48 is a client of its own, but the /48 stops
        // at four clients' worth.
        let admitted = (0..200u32)
            .filter(|i| {
                let a: IpAddr = format!("2001:db8:7:{i:x}::1").parse().unwrap();
                throttle.admit(a).is_ok()
            })
            .count();
        assert_eq!(admitted, 80);
        assert!(throttle.admit("2001:db8:8::1".parse().unwrap()).is_ok());
        assert_eq!(
            network_key("192.0.2.77".parse().unwrap()),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_ipv6_network_counts_as_one_client() {
        let throttle = SignInThrottle::new(2, 100);
        for host in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"] {
            assert!(throttle.admit(host.parse().unwrap()).is_ok());
        }
        assert!(
            throttle.admit("2001:db8:1:2::77".parse().unwrap()).is_err(),
            "another address of the same /64"
        );
        assert!(throttle.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
