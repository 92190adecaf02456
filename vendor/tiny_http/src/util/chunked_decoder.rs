//! xs patch: a strict decoder for `Transfer-Encoding: chunked` bodies.
//!
//! It replaces `chunked_transfer::Decoder`, which reported the end of the
//! body when the connection ended inside a chunk (a cut upload was stored
//! as if complete) and read chunk-size lines without bound. Here:
//! - the body ends only at the last chunk (`0`) and its trailer; the
//!   connection ending anywhere before is an `UnexpectedEof` error;
//! - a chunk-size line (with its extensions) or a trailer line is at most
//!   `MAX_LINE` bytes, the trailer at most `MAX_TRAILER` bytes; lines end in
//!   CRLF; sizes are hex digits that fit a u64;
//! - dropped before its end (a handler refused the body unread), it reads
//!   on to the end when that is at most `DRAIN_LIMIT` bytes away, so the
//!   connection can carry its next request; otherwise, or after any
//!   error, it poisons the connection, which then closes.

use std::io::{Error, ErrorKind, Read, Result};

use crate::util::framing::Poison;

/// The longest chunk-size or trailer line accepted, CRLF included.
const MAX_LINE: usize = 4096;
/// The most trailer bytes accepted (they are read and dropped).
const MAX_TRAILER: usize = 64 * 1024;
/// The most body bytes read to skip an unread body on drop.
const DRAIN_LIMIT: u64 = 1024 * 1024;

enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// The last chunk and its trailer have been read.
    Done,
    /// An error was returned; the connection is poisoned.
    Failed,
}

pub struct ChunkedDecoder<R: Read> {
    source: R,
    state: State,
    poison: Poison,
}

impl<R: Read> ChunkedDecoder<R> {
    pub(crate) fn new(source: R, poison: Poison) -> ChunkedDecoder<R> {
        ChunkedDecoder {
            source,
            state: State::Size,
            poison,
        }
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(invalid("the chunked body already failed")),
                State::Size => {
                    let size = self.read_size_line()?;
                    if size == 0 {
                        self.skip_trailer()?;
                        self.state = State::Done;
                        return Ok(0);
                    }
                    self.state = State::Data(size);
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let want = left.min(buf.len() as u64) as usize;
                    let read = self.source.read(&mut buf[..want])?;
                    if read == 0 {
                        return Err(cut());
                    }
                    let left = left - read as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(read);
                }
                State::DataEnd => {
                    if !self.read_line()?.is_empty() {
                        return Err(invalid("a chunk is longer than its size"));
                    }
                    self.state = State::Size;
                }
            }
        }
    }

    /// `1*HEXDIG [ BWS ";" chunk-ext ] CRLF`; extensions are ignored.
    fn read_size_line(&mut self) -> Result<u64> {
        let line = self.read_line()?;
        let digits = match line.iter().position(|b| *b == b';') {
            Some(at) => &line[..at],
            None => &line[..],
        };
        let digits = trim_end_whitespace(digits);
        if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid("invalid chunk size"));
        }
        let text = std::str::from_utf8(digits).map_err(|_| invalid("invalid chunk size"))?;
        u64::from_str_radix(text, 16).map_err(|_| invalid("invalid chunk size"))
    }

    /// Reads trailer lines up to the empty line that ends the body.
    fn skip_trailer(&mut self) -> Result<()> {
        let mut total = 0;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len();
            if total > MAX_TRAILER {
                return Err(invalid("chunked trailer too large"));
            }
        }
    }

    /// One CRLF-terminated line, without its CRLF.
    fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let mut byte = [0u8];
        loop {
            if self.source.read(&mut byte)? == 0 {
                return Err(cut());
            }
            match byte[0] {
                b'\n' if line.last() == Some(&b'\r') => {
                    line.pop();
                    return Ok(line);
                }
                b'\n' => return Err(invalid("a chunk line ends without CR")),
                other => line.push(other),
            }
            if line.len() > MAX_LINE {
                return Err(invalid("chunk line too long"));
            }
        }
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let result = self.step(buf);
        if let Err(e) = &result {
            self.state = State::Failed;
            self.poison.set_by(e);
        }
        result
    }
}

impl<R: Read> Drop for ChunkedDecoder<R> {
    fn drop(&mut self) {
        let mut skipped: u64 = 0;
        let mut buf = [0u8; 8 * 1024];
        // A connection already poisoned closes anyway: nothing to drain for.
        while skipped <= DRAIN_LIMIT && !self.poison.is_set() {
            match self.state {
                State::Done => return,
                State::Failed => break,
                _ => match self.read(&mut buf) {
                    Ok(n) => skipped += n as u64,
                    Err(_) => break,
                },
            }
        }
        self.poison.set();
    }
}

fn trim_end_whitespace(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn invalid(reason: &'static str) -> Error {
    Error::new(ErrorKind::InvalidData, reason)
}

fn cut() -> Error {
    Error::new(
        ErrorKind::UnexpectedEof,
        "the connection ended before the last chunk of the body",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Decodes `wire`; the body or the error kind, and whether the
    /// connection was poisoned, and what is left after the body.
    fn decode(wire: &[u8]) -> (std::result::Result<Vec<u8>, ErrorKind>, bool, Vec<u8>) {
        let poison = Poison::default();
        let mut source = Cursor::new(wire.to_vec());
        let body = {
            let mut decoder = ChunkedDecoder::new(&mut source, poison.clone());
            let mut body = Vec::new();
            decoder
                .read_to_end(&mut body)
                .map(|_| body)
                .map_err(|e| e.kind())
        };
        let at = source.position() as usize;
        (body, poison.is_set(), wire[at..].to_vec())
    }

    #[test]
    fn whole_bodies() {
        let (body, poisoned, rest) = decode(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT");
        assert_eq!(body.unwrap(), b"hello world");
        assert!(!poisoned);
        assert_eq!(rest, b"NEXT");
        let (body, _, rest) = decode(b"A \r\n0123456789\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\nNEXT");
        assert_eq!(body.unwrap(), b"0123456789");
        assert_eq!(rest, b"NEXT");
        let (body, _, _) = decode(b"0\r\n\r\n");
        assert_eq!(body.unwrap(), b"");
    }

    #[test]
    fn cut_bodies_are_errors() {
        for wire in [
            &b"400\r\nonly a hundred bytes"[..],
            b"5\r\nhello\r\n",
            b"5\r\nhello",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n0\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\r\n",
            b"5",
            b"",
        ] {
            let (body, poisoned, _) = decode(wire);
            assert_eq!(body, Err(ErrorKind::UnexpectedEof), "{wire:?}");
            assert!(poisoned);
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let long_line = [b"1;".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        for wire in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"3\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            &long_line,
        ] {
            let (body, poisoned, _) = decode(wire);
            assert_eq!(body, Err(ErrorKind::InvalidData), "{wire:?}");
            assert!(poisoned);
        }
    }

    #[test]
    fn an_unread_body_is_drained_or_poisons() {
        let poison = Poison::default();
        let mut source = Cursor::new(b"5\r\nhello\r\n0\r\n\r\nNEXT".to_vec());
        drop(ChunkedDecoder::new(&mut source, poison.clone()));
        assert!(!poison.is_set());
        assert_eq!(&source.get_ref()[source.position() as usize..], b"NEXT");

        let big = DRAIN_LIMIT as usize + 10;
        let mut wire = format!("{big:x}\r\n").into_bytes();
        wire.extend(vec![b'x'; big]);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        let poison = Poison::default();
        drop(ChunkedDecoder::new(Cursor::new(wire), poison.clone()));
        assert!(poison.is_set());
    }
}
