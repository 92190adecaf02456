use std::io::Result as IoResult;
use std::io::{Error, ErrorKind, Read};
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

use crate::util::framing::Poison;

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
///
/// xs patch: the sub-reader ending before the limit is an `UnexpectedEof`
/// error (upstream returned EOF, so a cut body looked complete); that, any
/// error, or a rest too long to throw away sets the connection's `Poison`.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    last_read_signal: Sender<IoResult<()>>,
    poison: Poison,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub(crate) fn new(
        reader: R,
        size: usize,
        poison: Poison,
    ) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
            poison,
        };

        (r, rx)
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.poison.set();
                Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the connection ended before the body's Content-Length",
                ))
            }
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            Err(e) => {
                self.poison.set_by(&e);
                Err(e)
            }
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        // xs patch: the upstream drop allocated a buffer of the whole
        // remaining size (a forged Content-Length aborted the process) and
        // drained without bound. Drain through a fixed buffer, and give up
        // past DRAIN_LIMIT: the connection is then poisoned and closes.
        // A connection already poisoned (this body failed to read, say)
        // closes anyway: nothing to drain for. The drain's reads time out
        // like any body read (see refined_tcp_stream.rs).
        const DRAIN_LIMIT: usize = 1024 * 1024;
        if self.size > DRAIN_LIMIT || self.poison.is_set() {
            self.poison.set();
            self.last_read_signal.send(Ok(())).ok();
            return;
        }
        let mut buf = [0u8; 8 * 1024];
        while self.size > 0 {
            let want = self.size.min(buf.len());
            match self.reader.read(&mut buf[..want]) {
                Err(e) => {
                    self.poison.set_by(&e);
                    self.last_read_signal.send(Err(e)).ok();
                    return;
                }
                Ok(0) => {
                    self.poison.set();
                    break;
                }
                Ok(n) => self.size -= n,
            }
        }
        self.last_read_signal.send(Ok(())).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use crate::util::framing::Poison;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5, Poison::default());

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5, Poison::default());

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn a_cut_body_is_an_error_and_poisons() {
        use std::io::{Cursor, ErrorKind};

        let poison = Poison::default();
        let (mut equal_reader, _) = EqualReader::new(Cursor::new(b"short"), 10, poison.clone());
        let mut body = Vec::new();
        let error = equal_reader.read_to_end(&mut body).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
        assert!(poison.is_set());

        let poison = Poison::default();
        drop(EqualReader::new(Cursor::new(b"whole"), 5, poison.clone()));
        assert!(!poison.is_set());
        drop(EqualReader::new(Cursor::new(b"short"), 10, poison.clone()));
        assert!(poison.is_set());
    }
}
