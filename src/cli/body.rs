//! Response bodies: `Content-Length`, chunked, or "until the server closes".
//!
//! `Body` is a plain `Read` that hands out bytes as soon as they arrive: a
//! read returns what one chunk (or one socket read) has, never waiting to
//! fill the caller's buffer. That is what lets `xs cat -f` print a frame the
//! moment the server sends it.

use std::io::{self, BufRead, Read};

/// The longest chunk-size or trailer line we accept; real ones are tiny.
const MAX_LINE: u64 = 8 * 1024;

/// How the body's end is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
    /// No body at all (204, 304).
    Empty,
}

/// Where a chunked body is between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes still to come.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
}

/// A response body over a buffered connection.
pub struct Body<R> {
    source: R,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

impl<R: BufRead> Body<R> {
    pub fn new(source: R, framing: Framing) -> Body<R> {
        let state = match framing {
            Framing::Length(0) | Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::UntilClose => State::UntilClose,
        };
        Body { source, state }
    }

    /// Reads the whole rest of the body as text, at most `limit` bytes of
    /// it (error bodies: enough to explain, never unbounded).
    pub fn text(&mut self, limit: u64) -> io::Result<String> {
        let mut bytes = Vec::new();
        self.take(limit).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// One line (up to and including `\n`), bounded; EOF is an error
    /// because a chunked body always ends with its own terminator.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        (&mut self.source)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(if line.len() as u64 >= MAX_LINE {
                invalid("chunk header line too long")
            } else {
                closed_early()
            });
        }
        Ok(line)
    }

    /// Parses a chunk-size line (`1a3;ext=1\r\n`).
    fn chunk_size(&mut self) -> io::Result<u64> {
        let line = self.line()?;
        let text = String::from_utf8_lossy(&line);
        let digits = text.split(';').next().unwrap_or_default().trim();
        u64::from_str_radix(digits, 16)
            .map_err(|_| invalid(&format!("bad chunk size {:?}", digits)))
    }

    /// Skips the trailer section after the last chunk.
    fn skip_trailers(&mut self) -> io::Result<()> {
        loop {
            let line = self.line()?;
            if line == b"\r\n" || line == b"\n" {
                return Ok(());
            }
        }
    }

    /// Reads up to `want` bytes of body data that the source has.
    fn data(&mut self, buf: &mut [u8], want: u64) -> io::Result<usize> {
        let room = buf.len().min(usize::try_from(want).unwrap_or(usize::MAX));
        let n = self.source.read(&mut buf[..room])?;
        if n == 0 {
            return Err(closed_early());
        }
        Ok(n)
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::UntilClose => return self.source.read(buf),
                State::Length(remaining) => {
                    let n = self.data(buf, remaining)?;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(n);
                }
                State::Chunked(Chunk::Size) => match self.chunk_size()? {
                    0 => {
                        self.skip_trailers()?;
                        self.state = State::Done;
                    }
                    size => self.state = State::Chunked(Chunk::Data(size)),
                },
                State::Chunked(Chunk::Data(remaining)) => {
                    let n = self.data(buf, remaining)?;
                    let left = remaining - n as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(n);
                }
                State::Chunked(Chunk::DataEnd) => {
                    let line = self.line()?;
                    if line != b"\r\n" && line != b"\n" {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = State::Chunked(Chunk::Size);
                }
            }
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

fn closed_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection before the response ended",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// A source that hands out at most `step` bytes per read, the way a
    /// socket splits a response anywhere it likes.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn decode(raw: &[u8], framing: Framing, step: usize) -> io::Result<Vec<u8>> {
        let source = BufReader::with_capacity(
            step.max(1),
            Trickle {
                bytes: raw.to_vec(),
                at: 0,
                step,
            },
        );
        let mut out = Vec::new();
        Body::new(source, framing).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn chunked_survives_any_split() {
        let raw =
            b"5\r\nhello\r\n7;ext=1\r\n, world\r\n1\r\n\n\r\n0\r\nX-Trailer: y\r\n\r\nGARBAGE";
        for step in 1..raw.len() {
            assert_eq!(
                decode(raw, Framing::Chunked, step).unwrap(),
                b"hello, world\n",
                "step {step}"
            );
        }
    }

    #[test]
    fn chunked_truncation_is_an_error() {
        let err = decode(b"5\r\nhel", Framing::Chunked, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = decode(b"5\r\nhello\r\n", Framing::Chunked, 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = decode(b"zz\r\n", Framing::Chunked, 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = decode(b"2\r\nabc\r\n0\r\n\r\n", Framing::Chunked, 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn length_and_close_framing() {
        assert_eq!(decode(b"abcdef", Framing::Length(4), 1).unwrap(), b"abcd");
        assert!(decode(b"ab", Framing::Length(4), 1).is_err());
        assert_eq!(decode(b"abc", Framing::UntilClose, 2).unwrap(), b"abc");
        assert_eq!(decode(b"abc", Framing::Empty, 2).unwrap(), b"");
    }

    #[test]
    fn a_read_returns_what_has_arrived() {
        // With a one-chunk source the first read gives exactly that chunk,
        // not a full buffer: the property `cat -f` depends on.
        let raw = b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
        let source = BufReader::new(Trickle {
            bytes: raw.to_vec(),
            at: 0,
            step: 8,
        });
        let mut body = Body::new(source, Framing::Chunked);
        let mut buf = [0u8; 64];
        let n = body.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abc");
    }
}
