//! Getting bytes to the user: streaming a response body to stdout as it
//! arrives, hiding the server's idle keepalives, and treating a closed
//! stdout (`xs cat -f … | head -1`) as a normal way to finish.
//!
//! Every JSON document or line we print ends with `\n`, even where the
//! server's answer (a single frame, a hash) has none: cross.stream's CLI
//! leaves it off, which breaks `while read` loops and `>> log.jsonl`.
//! Raw bytes (`xs cas`, a string from `xs eval`) are never touched.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use super::args::Stop;
use crate::sys;

/// What the body is, and so what printing it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// NDJSON (or one JSON document): an idle follow stream carries lone
    /// `\n` keepalives that JSON readers skip; the user never sees them.
    /// The output ends with a newline.
    DropBlank,
    /// One JSON document or one line of text (a frame, a hash): as sent,
    /// then a newline if it did not end with one.
    Document,
    /// Raw bytes (CAS content, SSE, a string from eval): untouched.
    Verbatim,
}

impl Lines {
    /// Whether non-empty output must end with a newline.
    fn ends_with_newline(self) -> bool {
        match self {
            Lines::DropBlank | Lines::Document => true,
            Lines::Verbatim => false,
        }
    }
}

/// Drops lines that are only `\n`, at line granularity across any chunk
/// boundary, without holding back a byte of real output: the only state is
/// whether the next byte starts a line.
#[derive(Debug)]
pub struct BlankLineFilter {
    at_line_start: bool,
}

impl Default for BlankLineFilter {
    fn default() -> Self {
        BlankLineFilter {
            at_line_start: true,
        }
    }
}

impl BlankLineFilter {
    /// Appends `chunk` minus its blank lines to `out`.
    pub fn apply(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &byte in chunk {
            if byte == b'\n' && self.at_line_start {
                continue;
            }
            out.push(byte);
            self.at_line_start = byte == b'\n';
        }
    }
}

/// Streams a response body to stdout, flushing each piece.
pub fn body_to_stdout(body: &mut impl Read, lines: Lines) -> Result<(), Stop> {
    exit_when_stdout_closes();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    copy_body(body, &mut out, lines, stdout_closed)
}

/// Copies `body` to `out` piece by piece as pieces arrive. When a piece was
/// nothing but keepalives, `closed` is asked whether the reader of our
/// output has gone, so an idle follow ends once nobody is listening.
pub fn copy_body(
    body: &mut impl Read,
    out: &mut impl Write,
    lines: Lines,
    closed: fn() -> bool,
) -> Result<(), Stop> {
    let mut piece = vec![0u8; 64 * 1024];
    let mut filtered = Vec::new();
    let mut filter = BlankLineFilter::default();
    // The last byte written, to know whether the output needs its newline.
    let mut last = None;
    loop {
        let n = match body.read(&mut piece) {
            Ok(0) if lines.ends_with_newline() && last.is_some_and(|b| b != b'\n') => {
                return out
                    .write_all(b"\n")
                    .and_then(|()| out.flush())
                    .map_err(write_failure)
            }
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Stop::Failed(format!("reading response: {e}"))),
        };
        let bytes = match lines {
            Lines::Verbatim | Lines::Document => &piece[..n],
            Lines::DropBlank => {
                filtered.clear();
                filter.apply(&piece[..n], &mut filtered);
                &filtered[..]
            }
        };
        if bytes.is_empty() {
            if closed() {
                return Err(Stop::OutputClosed);
            }
            continue;
        }
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(write_failure)?;
        last = bytes.last().copied();
    }
}

/// Writes `bytes` to stdout and flushes.
pub fn to_stdout(bytes: &[u8]) -> Result<(), Stop> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(write_failure)
}

/// Writes a message to stderr; if even that fails there is nobody to tell.
pub fn to_stderr(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// A closed pipe or descriptor ends the command quietly; anything else
/// (a full disk) is worth reporting.
fn write_failure(error: io::Error) -> Stop {
    if error.kind() == io::ErrorKind::BrokenPipe || sys::fd::is_bad_descriptor(&error) {
        Stop::OutputClosed
    } else {
        Stop::Failed(format!("writing output: {error}"))
    }
}

/// Whether stdout's reader has gone: a pipe whose read end closed reports
/// POLLERR, a hung-up terminal POLLHUP. Files never do.
/// Ends the process as soon as the reader of our stdout goes away
/// (`xs cat -f | head -1`), rather than at the next write, which on a quiet
/// follow could be a keepalive 20 s later. A watcher thread sleeps in
/// poll(2) until stdout reports an error or hang-up; regular files and
/// terminals that stay open never do.
fn exit_when_stdout_closes() {
    let _ = std::thread::Builder::new()
        .name("stdout-watch".into())
        .spawn(|| {
            if sys::fd::wait_hung_up(io::stdout().as_fd()).unwrap_or(false) {
                std::process::exit(0);
            }
        });
}

fn stdout_closed() -> bool {
    sys::fd::is_hung_up(io::stdout().as_fd()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_in_pieces(pieces: &[&[u8]]) -> Vec<u8> {
        let mut filter = BlankLineFilter::default();
        let mut out = Vec::new();
        for piece in pieces {
            filter.apply(piece, &mut out);
        }
        out
    }

    #[test]
    fn lone_newlines_disappear_across_boundaries() {
        assert_eq!(
            filter_in_pieces(&[b"\n", b"\n{\"a\":1}\n", b"\n"]),
            b"{\"a\":1}\n"
        );
        assert_eq!(
            filter_in_pieces(&[b"{\"a\"", b":1}\n\n", b"{\"b\":2}\n"]),
            b"{\"a\":1}\n{\"b\":2}\n"
        );
        assert_eq!(
            filter_in_pieces(&[b"{\"a\":1}", b"\n", b"\n", b"\n{}\n"]),
            b"{\"a\":1}\n{}\n"
        );
    }

    #[test]
    fn real_lines_are_never_held_back() {
        let mut filter = BlankLineFilter::default();
        let mut out = Vec::new();
        filter.apply(b"{\"partial\"", &mut out);
        assert_eq!(out, b"{\"partial\"");
    }

    /// A body that yields its pieces one read at a time.
    struct Pieces(Vec<&'static [u8]>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            buf[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    /// An output whose reader has gone.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn copies_with_and_without_filtering() {
        let mut out = Vec::new();
        let mut body = Pieces(vec![b"\n", b"{}\n", b"\n"]);
        copy_body(&mut body, &mut out, Lines::DropBlank, || false).unwrap();
        assert_eq!(out, b"{}\n");
        let mut out = Vec::new();
        let mut body = Pieces(vec![b"\n", b"x\n\n"]);
        copy_body(&mut body, &mut out, Lines::Verbatim, || false).unwrap();
        assert_eq!(out, b"\nx\n\n");
    }

    #[test]
    fn json_output_ends_with_a_newline_raw_output_as_sent() {
        let print = |pieces: Vec<&'static [u8]>, lines| {
            let mut out = Vec::new();
            copy_body(&mut Pieces(pieces), &mut out, lines, || false).unwrap();
            out
        };
        assert_eq!(
            print(vec![b"{\"a\"", b":1}"], Lines::Document),
            b"{\"a\":1}\n"
        );
        assert_eq!(print(vec![b"{}\n"], Lines::Document), b"{}\n");
        assert_eq!(print(vec![b"{}"], Lines::DropBlank), b"{}\n");
        assert_eq!(print(vec![b"{}\n", b"\n"], Lines::DropBlank), b"{}\n");
        // Nothing printed (a 204): nothing added.
        assert_eq!(print(vec![], Lines::Document), b"");
        assert_eq!(print(vec![b"\n"], Lines::DropBlank), b"");
        assert_eq!(print(vec![b"raw"], Lines::Verbatim), b"raw");
    }

    #[test]
    fn a_closed_output_ends_quietly() {
        let mut body = Pieces(vec![b"{}\n"]);
        assert_eq!(
            copy_body(&mut body, &mut ClosedPipe, Lines::DropBlank, || false),
            Err(Stop::OutputClosed)
        );
        // While idle, only keepalives arrive: the probe notices instead.
        let mut body = Pieces(vec![b"\n", b"\n"]);
        assert_eq!(
            copy_body(&mut body, &mut Vec::new(), Lines::DropBlank, || true),
            Err(Stop::OutputClosed)
        );
    }
}
