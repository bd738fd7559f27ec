//! Geometry rules of both ring kinds, below both the configuration and the rings: the limits on
//! capacities, slot sizes and message sizes, and the layout of a shared object (header page,
//! control block, data region) that a creator writes and every opener recomputes and compares.

use crate::error::Corruption;

/// `b"SHMRING\0"` read as a native-endian u64: the first word of every ring object.
pub(crate) const MAGIC: u64 = u64::from_ne_bytes(*b"SHMRING\0");
/// Size of the header page; the control block starts here.
pub(crate) const HEADER_SIZE: u64 = 4096;
/// Page granularity used for `data_offset`.
pub(crate) const PAGE: u64 = 4096;
/// Bytes of an SPSC record header.
pub(crate) const RECORD_HEADER: u64 = 8;

/// Ring kinds stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Spsc = 1,
    Mpmc = 2,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "SPSC",
            Kind::Mpmc => "MPMC",
        }
    }

    pub(crate) fn from_raw(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpmc),
            _ => None,
        }
    }
}

// ---- SPSC: capacity in bytes, messages of variable length ----

/// Smallest capacity: room for two of the smallest records.
pub const MIN_CAPACITY: usize = 32;
/// Largest capacity: 1 TiB (1 GiB on 32-bit targets, whose address space must hold the
/// whole ring).
#[cfg(target_pointer_width = "64")]
pub const MAX_CAPACITY: usize = 1 << 40;
/// Largest capacity: 1 GiB on 32-bit targets, whose address space must hold the whole ring
/// (1 TiB on 64-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_CAPACITY: usize = 1 << 30;
/// The capacity rule, as error messages say it.
#[cfg(target_pointer_width = "64")]
const CAPACITY_RULE: &str = "capacity must lie in 32 bytes ..= 1 TiB";
#[cfg(not(target_pointer_width = "64"))]
const CAPACITY_RULE: &str = "capacity must lie in 32 bytes ..= 1 GiB on 32-bit targets";

/// Largest payload a ring of `capacity` bytes can always take.
pub const fn max_message_for(capacity: usize) -> usize {
    (capacity / 2).saturating_sub(RECORD_HEADER as usize)
}

/// Checks an SPSC geometry: capacity and largest message.
pub(crate) fn check_spsc(capacity: u64, max_message: u64) -> Result<(), Corruption> {
    if !capacity.is_power_of_two() {
        return Err(Corruption::new("capacity must be a power of two", capacity));
    }
    if capacity < MIN_CAPACITY as u64 || capacity > MAX_CAPACITY as u64 {
        return Err(Corruption::new(CAPACITY_RULE, capacity));
    }
    let limit = (max_message_for(capacity as usize) as u64).min(u64::from(u32::MAX));
    if max_message == 0 || max_message > limit {
        return Err(Corruption::new(
            "max message must lie in 1 ..= capacity / 2 - 8 (and below 4 GiB)",
            max_message,
        ));
    }
    Ok(())
}

// ---- MPMC: slots of a fixed size, and the endpoint registry ----

/// Entries of the endpoint registry at most (and by default).
pub const MAX_ENDPOINTS: usize = 64;
/// Bytes of a slot taken by its header (sequence word and length); the rest is payload.
pub(crate) const SLOT_HEADER: usize = 16;
/// Smallest slot size in bytes (one cache line).
pub const MIN_SLOT_SIZE: usize = 64;
/// Largest slot size in bytes (16 MiB).
pub const MAX_SLOT_SIZE: usize = 1 << 24;
/// Largest number of slots: 2^32 (2^24 on 32-bit targets, whose address space must hold
/// the whole data region).
#[cfg(target_pointer_width = "64")]
pub const MAX_SLOTS: usize = 1 << 32;
/// Largest number of slots: 2^24 on 32-bit targets, whose address space must hold the
/// whole data region (2^32 on 64-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_SLOTS: usize = 1 << 24;
/// Largest data region (slots x slot size): 1 TiB, 1 GiB on 32-bit targets.
#[cfg(target_pointer_width = "64")]
const MAX_DATA: u64 = 1 << 40;
#[cfg(not(target_pointer_width = "64"))]
const MAX_DATA: u64 = 1 << 30;
/// The rules above, as error messages say them.
#[cfg(target_pointer_width = "64")]
const SLOTS_RULE: &str = "slot count must be a power of two in 2 ..= 2^32";
#[cfg(not(target_pointer_width = "64"))]
const SLOTS_RULE: &str = "slot count must be a power of two in 2 ..= 2^24 on 32-bit targets";
#[cfg(target_pointer_width = "64")]
const DATA_RULE: &str = "ring data must not exceed 1 TiB";
#[cfg(not(target_pointer_width = "64"))]
const DATA_RULE: &str = "ring data must not exceed 1 GiB on 32-bit targets";

/// Checks an MPMC geometry: slot count, slot size and largest message.
pub(crate) fn check_mpmc(slots: u64, slot_size: u32, max_message: u32) -> Result<(), Corruption> {
    if !slots.is_power_of_two() || slots < 2 || slots > MAX_SLOTS as u64 {
        return Err(Corruption::new(SLOTS_RULE, slots));
    }
    let size = slot_size as usize;
    if size % 64 != 0 || !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&size) {
        return Err(Corruption::new(
            "slot size must be a multiple of 64 in 64 ..= 16 MiB",
            u64::from(slot_size),
        ));
    }
    if max_message as usize > size - SLOT_HEADER {
        return Err(Corruption::new(
            "max message must not exceed the slot payload (slot size - 16)",
            u64::from(max_message),
        ));
    }
    if slots * u64::from(slot_size) > MAX_DATA {
        return Err(Corruption::new(DATA_RULE, slots * u64::from(slot_size)));
    }
    Ok(())
}

// ---- The layout of a shared object ----

/// The validated shape of a ring, copied out of the header into the handle's own memory.
/// `total_len`, and so every offset and length in it, fits in a `usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) kind: Kind,
    pub(crate) capacity: u64,
    pub(crate) slot_size: u32,
    pub(crate) max_message: u32,
    pub(crate) control_offset: u64,
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) total_len: u64,
    pub(crate) endpoint_count: u32,
}

/// Rules a ring kind imposes on a geometry, checked for both creation and opening.
pub(crate) trait KindRules {
    const KIND: Kind;
    /// Size of the control block that sits at `control_offset`.
    const CONTROL_SIZE: u64;
    /// Checks capacity, slot size and max message; returns the data region's length.
    fn data_len(capacity: u64, slot_size: u32, max_message: u32) -> Result<u64, Corruption>;
}

impl Geometry {
    /// Lays out a new ring of kind `R`.
    pub(crate) fn new<R: KindRules>(
        capacity: u64,
        slot_size: u32,
        max_message: u32,
        endpoint_count: u32,
    ) -> Result<Geometry, Corruption> {
        let data_len = R::data_len(capacity, slot_size, max_message)?;
        let control_offset = HEADER_SIZE;
        let data_offset = round_up(control_offset + R::CONTROL_SIZE, PAGE)
            .ok_or(Corruption::new("control block too large", R::CONTROL_SIZE))?;
        let total_len = data_offset
            .checked_add(data_len)
            .ok_or(Corruption::new("ring too large", data_len))?;
        // Every offset and length below `total_len` is then a lossless `usize` too. (The
        // kinds' size limits keep this true on 32-bit targets; this check makes it certain.)
        if usize::try_from(total_len).is_err() {
            return Err(Corruption::new(
                "ring too large for this target's address space",
                total_len,
            ));
        }
        if endpoint_count as usize > MAX_ENDPOINTS || endpoint_count == 0 {
            return Err(Corruption::new(
                "endpoint count must be 1..=64",
                u64::from(endpoint_count),
            ));
        }
        Ok(Geometry {
            kind: R::KIND,
            capacity,
            slot_size,
            max_message,
            control_offset,
            data_offset,
            data_len,
            total_len,
            endpoint_count,
        })
    }

    /// Size of the object to create: `total_len` rounded up to a page.
    pub(crate) fn object_len(&self) -> u64 {
        round_up(self.total_len, PAGE).unwrap_or(self.total_len)
    }
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    Some(v.checked_add(to - 1)? / to * to)
}

/// Bytes of the SPSC control block (three 128-byte lines; the ring asserts its struct's size).
pub(crate) const SPSC_CONTROL_SIZE: u64 = 384;
/// Bytes of the MPMC control block (three 128-byte lines; the ring asserts its struct's size).
pub(crate) const MPMC_CONTROL_SIZE: u64 = 384;
/// Bytes of the MPMC claim table that follows its control block: one 128-byte line per
/// registry entry.
pub(crate) const MPMC_CLAIMS_SIZE: u64 = MAX_ENDPOINTS as u64 * 128;

/// The rules of an SPSC ring.
pub(crate) struct SpscRules;

impl KindRules for SpscRules {
    const KIND: Kind = Kind::Spsc;
    const CONTROL_SIZE: u64 = SPSC_CONTROL_SIZE;

    fn data_len(capacity: u64, slot_size: u32, max_message: u32) -> Result<u64, Corruption> {
        check_spsc(capacity, u64::from(max_message))?;
        if slot_size != 0 {
            return Err(Corruption::new(
                "an SPSC ring has no slot size",
                u64::from(slot_size),
            ));
        }
        Ok(capacity)
    }
}

/// The rules of an MPMC ring.
pub(crate) struct MpmcRules;

impl KindRules for MpmcRules {
    const KIND: Kind = Kind::Mpmc;
    const CONTROL_SIZE: u64 = MPMC_CONTROL_SIZE + MPMC_CLAIMS_SIZE;

    fn data_len(capacity: u64, slot_size: u32, max_message: u32) -> Result<u64, Corruption> {
        check_mpmc(capacity, slot_size, max_message)?;
        Ok(capacity * u64::from(slot_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpmc_geometry_rules() {
        assert!(check_mpmc(2, 64, 48).is_ok());
        assert!(check_mpmc(1, 64, 48).is_err());
        assert!(check_mpmc(3, 64, 48).is_err());
        assert!(check_mpmc(4, 96, 48).is_err());
        assert!(check_mpmc(4, 64, 49).is_err());
        assert!(check_mpmc(4, 32, 16).is_err());
    }

    #[test]
    fn spsc_geometry_rules() {
        assert!(check_spsc(32, 8).is_ok());
        assert!(check_spsc(32, 9).is_err());
        assert!(check_spsc(48, 8).is_err());
        assert!(check_spsc(16, 1).is_err());
        assert!(check_spsc(1 << 20, 0).is_err());
    }
}
