//! Path MTU probing as libudx does it (`UDX_MTU_*`, `mtu_probeify_packet`, `ack_packet`).
//!
//! A stream starts at 1200 bytes per IP packet (`UDX_MTU_BASE`). The first acknowledgement
//! starts the search: one DATA packet at a time is padded (the header's data-offset byte says
//! how much; receivers skip the padding) to the size being tried, starting at the base and going
//! up 32 bytes (`UDX_MTU_STEP`) each time one is acknowledged, up to 1500 (`UDX_MTU_MAX`, which
//! is also the most a libudx peer expects: it reads datagrams into 2048-byte buffers). An
//! acknowledged probe raises the stream's packet size to the probe's; a lost probe is sent
//! again unpadded and does not count as congestion, and after 3 probes of one size are lost
//! (`UDX_MTU_MAX_PROBES`) the search stops at the last size that worked.
//!
//! libudx 1.21.3 (inside udx-native 1.21.3) has this state machine but compares the wanted size
//! with the packet size the wrong way round (`wanted_size > pkt->size` rejects every packet), so
//! its streams never probe and stay at 1200; upstream fixed it later ("track stream offset in
//! bytes, fixes bug preventing mtu probes from being generated"). This is the fixed behaviour.

/// Starting IP packet size (`UDX_MTU_BASE`).
pub const MTU_BASE: u16 = 1200;
/// Largest IP packet size probed (`UDX_MTU_MAX`).
pub const MTU_MAX: u16 = 1500;
/// Probe size increment (`UDX_MTU_STEP`).
pub const MTU_STEP: u16 = 32;
/// Probes of one size lost before the search stops (`UDX_MTU_MAX_PROBES`).
pub const MTU_MAX_PROBES: u8 = 3;
/// Most padding one packet can carry (the data-offset byte).
pub const MAX_PADDING: usize = 255;

/// Where the search stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuState {
    /// Nothing acknowledged yet: the base size is in use.
    Base,
    /// Probing larger sizes.
    Search,
    /// Done: the current size is final (for this path).
    Complete,
}

/// The probing state of one stream.
#[derive(Debug, Clone)]
pub struct MtuProber {
    mtu: u16,
    max: u16,
    state: MtuState,
    probe_size: u16,
    probe_count: u8,
    wanted: bool,
}

impl MtuProber {
    /// Starting at `base` bytes per IP packet, probing up to `max` (no probing if `max <= base`).
    pub fn new(base: u16, max: u16) -> Self {
        MtuProber {
            mtu: base,
            max,
            state: if max <= base {
                MtuState::Complete
            } else {
                MtuState::Base
            },
            probe_size: base,
            probe_count: 0,
            wanted: false,
        }
    }

    /// The IP packet size in use.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The state.
    pub fn state(&self) -> MtuState {
        self.state
    }

    /// The IP packet size the next probe should have, if one is wanted now.
    pub fn wanted(&self) -> Option<u16> {
        (self.wanted && self.state == MtuState::Search).then_some(self.probe_size)
    }

    /// A packet padded to [`wanted`](Self::wanted) went out.
    pub fn on_probe_sent(&mut self) {
        self.probe_count = self.probe_count.saturating_add(1);
        self.wanted = false;
    }

    /// A packet was acknowledged (`probe`: it was a probe, acknowledged as sent). Returns
    /// whether the MTU grew.
    pub fn on_acked(&mut self, probe: bool) -> bool {
        let mut grew = false;
        if probe && self.state == MtuState::Search && self.probe_count > 0 {
            self.probe_count = 0;
            grew = self.probe_size > self.mtu;
            self.mtu = self.probe_size;
            if self.probe_size >= self.max {
                self.state = MtuState::Complete;
            } else {
                self.probe_size = (self.probe_size + MTU_STEP).min(self.max);
                self.wanted = true;
            }
        }
        if self.state == MtuState::Base {
            // The base size works: start searching.
            self.state = MtuState::Search;
            self.wanted = true;
        }
        grew
    }

    /// A probe was declared lost (or had to be sent again before its fate was known).
    pub fn on_probe_lost(&mut self) {
        if self.state == MtuState::Search {
            if self.probe_count >= MTU_MAX_PROBES {
                self.state = MtuState::Complete;
            } else {
                self.wanted = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn the_search_climbs_in_32_byte_steps_to_1500() {
        let mut m = MtuProber::new(MTU_BASE, MTU_MAX);
        assert_eq!(m.state(), MtuState::Base);
        assert_eq!(m.wanted(), None);
        m.on_acked(false);
        assert_eq!(m.state(), MtuState::Search);
        // The first probe confirms the base (no padding), as in libudx.
        let mut sizes = Vec::new();
        while let Some(size) = m.wanted() {
            sizes.push(size);
            m.on_probe_sent();
            assert_eq!(m.wanted(), None, "one probe at a time");
            m.on_acked(false); // other packets' acks change nothing
            m.on_acked(true);
            assert_eq!(m.mtu(), size);
        }
        assert_eq!(sizes.first(), Some(&1200));
        assert_eq!(sizes[1], 1232);
        assert_eq!(sizes.last(), Some(&1500));
        assert!(sizes.windows(2).all(|w| w[1] - w[0] <= MTU_STEP));
        assert_eq!(m.state(), MtuState::Complete);
        assert_eq!(m.mtu(), 1500);
    }

    #[test]
    fn three_lost_probes_of_a_size_end_the_search_at_the_last_size_that_worked() {
        let mut m = MtuProber::new(MTU_BASE, MTU_MAX);
        m.on_acked(false);
        // 1200 and 1232 get through.
        for _ in 0..2 {
            m.wanted().unwrap();
            m.on_probe_sent();
            m.on_acked(true);
        }
        assert_eq!(m.mtu(), 1232);
        // 1264 is lost three times (a path MTU of 1250, say).
        for i in 0..3 {
            assert_eq!(m.wanted(), Some(1264), "attempt {i}");
            m.on_probe_sent();
            m.on_probe_lost();
        }
        assert_eq!(m.state(), MtuState::Complete);
        assert_eq!(m.wanted(), None);
        assert_eq!(m.mtu(), 1232);
        // A late ACK of an earlier probe changes nothing any more.
        assert!(!m.on_acked(true));
        assert_eq!(m.mtu(), 1232);
    }

    #[test]
    fn one_lost_probe_is_retried_and_no_probing_without_room() {
        let mut m = MtuProber::new(MTU_BASE, MTU_MAX);
        m.on_acked(false);
        m.on_probe_sent();
        m.on_probe_lost();
        assert_eq!(m.wanted(), Some(1200));
        m.on_probe_sent();
        assert!(!m.on_acked(true), "1200 is no growth");
        assert_eq!(m.wanted(), Some(1232));

        let mut fixed = MtuProber::new(1200, 1200);
        fixed.on_acked(false);
        assert_eq!(fixed.state(), MtuState::Complete);
        assert_eq!(fixed.wanted(), None);
    }
}
