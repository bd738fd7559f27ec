//! The checked message format shared by every transport.
//!
//! Word 0 of every message (native endian) is the *sequence word*: the sequence number in the
//! low 62 bits, plus the `MARK` flag (first measured message) and the `END` flag (last message).
//! Messages of 16 bytes or more end with the complement of the sequence word, and every 4 KiB
//! boundary inside the message holds a word derived from it. The receiver checks all of these,
//! so a lost, duplicated, reordered, truncated, torn or misframed message is caught, while the
//! check costs the same few loads whatever the transport.

/// Flag of the last message of a run.
pub const END: u64 = 1 << 63;
/// Flag of the first measured message (after the warm-up).
pub const MARK: u64 = 1 << 62;
/// The sequence-number bits.
pub const SEQ_MASK: u64 = MARK - 1;

const PAGE: usize = 4096;

#[inline]
fn page_word(word: u64, k: usize) -> u64 {
    word.rotate_left((k % 64) as u32) ^ 0x9e37_79b9_7f4a_7c15
}

#[inline]
fn put(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[inline]
fn get(buf: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// Writes the check words of a message with sequence word `word` into `buf` (its whole
/// length is the message; at least 8 bytes).
#[inline]
pub fn stamp(buf: &mut [u8], word: u64) {
    let n = buf.len();
    put(buf, 0, word);
    if n >= 16 {
        let mut off = PAGE;
        while off + 16 <= n {
            put(buf, off, page_word(word, off / PAGE));
            off += PAGE;
        }
        put(buf, n - 8, !word);
    }
}

/// Checks a received message of expected length `size` and returns its sequence word.
#[inline]
pub fn verify(buf: &[u8], size: usize) -> Result<u64, String> {
    let n = buf.len();
    if n != size {
        return Err(format!(
            "received a {n}-byte message, expected {size} bytes"
        ));
    }
    if n < 8 {
        return Err(format!("message of {n} bytes is too short to check"));
    }
    let word = get(buf, 0);
    if n >= 16 {
        let mut off = PAGE;
        while off + 16 <= n {
            if get(buf, off) != page_word(word, off / PAGE) {
                return Err(corrupt(word, off));
            }
            off += PAGE;
        }
        if get(buf, n - 8) != !word {
            return Err(corrupt(word, n - 8));
        }
    }
    Ok(word)
}

#[cold]
fn corrupt(word: u64, off: usize) -> String {
    format!(
        "corrupted message: sequence word {:#x} does not match the check word at byte {off}",
        word
    )
}

/// Tracks the sequence numbers a receiver sees.
#[derive(Debug, Default)]
pub struct SeqCheck {
    /// The next sequence number expected.
    pub next: u64,
}

impl SeqCheck {
    /// Checks the sequence word of the next message.
    #[inline]
    pub fn check(&mut self, word: u64) -> Result<(), String> {
        let seq = word & SEQ_MASK;
        if seq != self.next {
            return Err(seq_error(self.next, seq));
        }
        self.next += 1;
        Ok(())
    }
}

#[cold]
fn seq_error(expected: u64, got: u64) -> String {
    let what = if got < expected {
        "duplicated or reordered"
    } else {
        "lost"
    };
    format!("sequence error ({what}): expected message {expected}, received {got}")
}

/// A zeroed byte buffer whose start is 64-byte aligned (a cache line), so every transport
/// copies from and to the same kind of address.
pub struct AlignedBuf {
    blocks: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

impl AlignedBuf {
    /// A buffer of `len` bytes.
    pub fn new(len: usize) -> AlignedBuf {
        AlignedBuf {
            blocks: vec![Line([0; 64]); len.div_ceil(64).max(1)],
            len,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `blocks` holds at least `len` initialised bytes (`Line` is 64 plain bytes
        // with no padding), borrowed immutably for the returned lifetime.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    /// The bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably and exclusively through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_then_verify() {
        for size in [8, 16, 64, 1024, 4096, 4104, 4112, 65536, 1 << 20] {
            let mut b = AlignedBuf::new(size);
            stamp(b.bytes_mut(), 42 | MARK);
            assert_eq!(verify(b.bytes(), size).unwrap(), 42 | MARK);
            if size >= 16 {
                b.bytes_mut()[size - 1] ^= 1;
                assert!(verify(b.bytes(), size).is_err());
            }
        }
        assert_eq!(AlignedBuf::new(8).bytes().as_ptr() as usize % 64, 0);
    }

    #[test]
    fn sequence() {
        let mut c = SeqCheck::default();
        assert!(c.check(0).is_ok());
        assert!(c.check(1 | END).is_ok());
        assert!(c.check(1).is_err());
    }
}
