//! Message framing on standard input and output: lines, NUL-terminated, or a 4-byte
//! little-endian length before each message (the only one that carries any bytes at all).

use std::io::{self, BufRead, Write};

use crate::args::Framing;
use crate::exit::{Exit, Failure};

/// Reads messages from a byte stream.
pub struct FrameReader<R> {
    input: R,
    framing: Framing,
    buf: Vec<u8>,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(input: R, framing: Framing) -> Self {
        FrameReader {
            input,
            framing,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The next message, or `None` at the end of the input. A message longer than `max`
    /// bytes is an error (a length prefix is checked before its payload is read).
    pub fn next_frame(&mut self, max: usize) -> Result<Option<&[u8]>, Failure> {
        self.buf.clear();
        let read_err =
            |e: io::Error| Failure::new(Exit::Error, format!("reading standard input: {e}"));
        match self.framing {
            Framing::Lines | Framing::Nul => {
                let end = if self.framing == Framing::Lines {
                    b'\n'
                } else {
                    0
                };
                let n = self
                    .input
                    .read_until(end, &mut self.buf)
                    .map_err(read_err)?;
                if n == 0 {
                    return Ok(None);
                }
                if self.buf.last() == Some(&end) {
                    self.buf.pop();
                }
            }
            Framing::Len32 => {
                let mut prefix = [0u8; 4];
                let got = read_full(&mut self.input, &mut prefix).map_err(read_err)?;
                if got == 0 {
                    return Ok(None);
                }
                if got < 4 {
                    return Err(Failure::new(
                        Exit::Error,
                        format!("standard input ends inside a length prefix ({got} of 4 bytes)"),
                    ));
                }
                let len = u32::from_le_bytes(prefix) as usize;
                if len > max {
                    return Err(too_large(len, max));
                }
                self.buf.resize(len, 0);
                let got = read_full(&mut self.input, &mut self.buf).map_err(read_err)?;
                if got < len {
                    return Err(Failure::new(
                        Exit::Error,
                        format!("standard input ends inside a message ({got} of {len} bytes)"),
                    ));
                }
            }
        }
        if self.buf.len() > max {
            return Err(too_large(self.buf.len(), max));
        }
        Ok(Some(&self.buf))
    }
}

fn too_large(len: usize, max: usize) -> Failure {
    Failure::new(
        Exit::Error,
        format!("a {len}-byte message is larger than the ring's largest message ({max} bytes)"),
    )
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes one message with its framing.
pub fn write_frame(out: &mut impl Write, framing: Framing, msg: &[u8]) -> io::Result<()> {
    match framing {
        Framing::Lines => {
            out.write_all(msg)?;
            out.write_all(b"\n")
        }
        Framing::Nul => {
            out.write_all(msg)?;
            out.write_all(b"\0")
        }
        Framing::Len32 => {
            // Messages are at most u32::MAX bytes (the rings' limit).
            let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
            out.write_all(&len.to_le_bytes())?;
            out.write_all(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framing: Framing, input: &[u8], max: usize) -> Result<Vec<Vec<u8>>, Failure> {
        let mut r = FrameReader::new(input, framing);
        let mut v = Vec::new();
        while let Some(m) = r.next_frame(max)? {
            v.push(m.to_vec());
        }
        Ok(v)
    }

    #[test]
    fn lines_and_nul() {
        assert_eq!(
            frames(Framing::Lines, b"a\n\nbc\nlast", 10).unwrap(),
            [&b"a"[..], b"", b"bc", b"last"]
        );
        assert_eq!(
            frames(Framing::Nul, b"x\ny\0\0z\0", 10).unwrap(),
            [&b"x\ny"[..], b"", b"z"]
        );
        assert!(frames(Framing::Lines, b"toolong\n", 3).is_err());
    }

    #[test]
    fn len32_round_trip_and_truncation() {
        let msgs: [&[u8]; 4] = [b"", b"\n\0\xff", &[7u8; 300], b"end"];
        let mut bytes = Vec::new();
        for m in msgs {
            write_frame(&mut bytes, Framing::Len32, m).unwrap();
        }
        assert_eq!(frames(Framing::Len32, &bytes, 1000).unwrap(), msgs);
        assert!(frames(Framing::Len32, &bytes[..bytes.len() - 1], 1000).is_err());
        assert!(frames(Framing::Len32, &bytes[..2], 1000).is_err());
        // A prefix above the limit is refused before its payload is read.
        assert!(frames(Framing::Len32, &u32::MAX.to_le_bytes(), 1000).is_err());
    }
}
