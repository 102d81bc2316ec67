//! nat-sampler 1.0.1: estimates our public address from what other nodes report.
//!
//! The reference keeps a ring of up to 32 *references* to sample records; one record can sit at
//! several ring positions, and overwriting any of them decrements the shared hit counter. Here
//! the records live in a small arena and the ring, and the best-record pointers, hold arena
//! indices. Unreferenced records are reclaimed after every [`NatSampler::add`], so the arena
//! never holds more than 36 records.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

/// Ring capacity (16 exact + 16 host-only samples).
const RING: usize = 32;

/// A shared sample record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    host: Ipv4Addr,
    port: u16,
    hits: u32,
    /// False for a reclaimed arena slot.
    live: bool,
}

/// The reference's NAT sampler.
#[derive(Debug, Clone, Default)]
pub struct NatSampler {
    /// Record arena.
    records: Vec<Record>,
    /// The ring: indices into `records`, alternating exact and host-only samples.
    ring: Vec<u32>,
    top: usize,
    size: usize,
    threshold: usize,
    /// Best exact record (`_a`).
    best_exact: Option<u32>,
    /// Best host-only record (`_b`).
    best_host: Option<u32>,
    host: Option<Ipv4Addr>,
    port: u16,
}

impl NatSampler {
    /// An empty sampler: host unknown, port 0, size 0.
    pub fn new() -> Self {
        NatSampler {
            records: Vec::new(),
            ring: Vec::new(),
            top: 0,
            size: 0,
            threshold: 0,
            best_exact: None,
            best_host: None,
            host: None,
            port: 0,
        }
    }

    /// Adds one reported address and returns the hit count of its exact (host, port) record.
    pub fn add(&mut self, addr: SocketAddrV4) -> u32 {
        let host = *addr.ip();
        let port = addr.port();
        let a = self.bump(host, port, 2);
        let b = self.bump(host, 0, 1);

        if self.ring.len() < RING {
            self.size += 1;
            let s = self.size;
            self.threshold = s - if s < 4 {
                0
            } else if s < 8 {
                1
            } else if s < 12 {
                2
            } else {
                3
            };
            self.ring.push(a);
            self.ring.push(b);
            self.top += 2;
        } else {
            if self.top >= RING {
                self.top = 0;
            }
            self.overwrite(a);
            self.overwrite(b);
        }

        let a_hits = self.hits(a);
        let b_hits = self.hits(b);
        if self.best_exact.is_none_or(|r| self.hits(r) < a_hits) {
            self.best_exact = Some(a);
        }
        if self.best_host.is_none_or(|r| self.hits(r) < b_hits) {
            self.best_host = Some(b);
        }

        let best_exact = self
            .best_exact
            .and_then(|r| self.records.get(r as usize))
            .copied();
        let best_host = self
            .best_host
            .and_then(|r| self.records.get(r as usize))
            .copied();
        match (best_exact, best_host) {
            (Some(ra), _) if ra.hits as usize >= self.threshold => {
                self.host = Some(ra.host);
                self.port = ra.port;
            }
            (_, Some(rb)) if rb.hits as usize >= self.threshold => {
                self.host = Some(rb.host);
                self.port = 0;
            }
            _ => {
                self.host = None;
                self.port = 0;
            }
        }

        self.collect();
        a_hits
    }

    /// Our public host as estimated so far, if any.
    pub fn host(&self) -> Option<Ipv4Addr> {
        self.host
    }

    /// Our public port as estimated so far; 0 if unknown or randomized by the NAT.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The estimate as an address, if both the host and the port are known.
    pub fn addr(&self) -> Option<SocketAddrV4> {
        match self.host {
            Some(h) if self.port != 0 => Some(SocketAddrV4::new(h, self.port)),
            _ => None,
        }
    }

    /// True when the host is known but the port is not (a port-randomizing NAT).
    pub fn is_randomized(&self) -> bool {
        self.host.is_some() && self.port == 0
    }

    /// The number of samples taken into account (at most 16).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The hit count a record needs to be believed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    // ---------------------------------------------------------------------------------------

    fn hits(&self, r: u32) -> u32 {
        self.records.get(r as usize).map_or(0, |x| x.hits)
    }

    /// The reference `_bump`: find a matching record among the 4 most recent samples of the same
    /// kind and increment it, or make a new record with 1 hit.
    fn bump(&mut self, host: Ipv4Addr, port: u16, offset: usize) -> u32 {
        for i in 0..4 {
            // (top - offset - 2i) mod 32, as the reference's `& 31`.
            let j = (self.top + 4 * RING - offset - 2 * i) % RING;
            let Some(&r) = self.ring.get(j) else { break };
            if let Some(rec) = self.records.get_mut(r as usize) {
                if rec.port == port && rec.host == host {
                    rec.hits = rec.hits.saturating_add(1);
                    return r;
                }
            }
        }
        self.alloc(Record {
            host,
            port,
            hits: 1,
            live: true,
        })
    }

    /// Replaces the ring entry at `top` with `r` (decrementing the old record) and advances.
    fn overwrite(&mut self, r: u32) {
        if let Some(slot) = self.ring.get_mut(self.top) {
            let old = core::mem::replace(slot, r);
            if let Some(rec) = self.records.get_mut(old as usize) {
                rec.hits = rec.hits.saturating_sub(1);
            }
        }
        self.top += 1;
    }

    fn alloc(&mut self, rec: Record) -> u32 {
        if let Some(i) = self.records.iter().position(|r| !r.live) {
            if let Some(slot) = self.records.get_mut(i) {
                *slot = rec;
            }
            return u32::try_from(i).unwrap_or(u32::MAX);
        }
        self.records.push(rec);
        u32::try_from(self.records.len() - 1).unwrap_or(u32::MAX)
    }

    /// Reclaims records no longer referenced by the ring or the best-record pointers.
    fn collect(&mut self) {
        let mut used = [false; RING + 8];
        let refs = self
            .ring
            .iter()
            .copied()
            .chain(self.best_exact)
            .chain(self.best_host);
        for r in refs {
            if let Some(u) = used.get_mut(r as usize) {
                *u = true;
            }
        }
        for (i, rec) in self.records.iter_mut().enumerate() {
            if !used.get(i).copied().unwrap_or(true) {
                rec.live = false;
            }
        }
        while matches!(self.records.last(), Some(r) if !r.live) {
            self.records.pop();
        }
    }
}
