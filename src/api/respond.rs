//! Writing responses: small ones through tiny_http, streams by hand.
//!
//! Handlers return what to answer (`Handled`): a `Reply` the route table
//! sends, or a `Stream` it hands the request to; a refusal is the `Err`
//! reply, so a handler says `?` for every failure (a store failure turns
//! into its reply by `From`). The route table sends once.
//!
//! tiny_http's `Read`-based responses hold back 8 KiB before sending, which
//! would stall a follower waiting on one frame. Streams therefore take the
//! connection's raw writer and write the chunked body themselves: history
//! in large chunks, then one flush per live frame.
//!
//! A store failure is answered with the status `status_of` gives its
//! variant and its text as the body: the one place where the store's
//! failures meet HTTP.

use std::io::{self, Write};

use tiny_http::{Header, Request, Response, StatusCode};

use crate::store::StoreError;

/// The HTTP status a store failure is answered with.
pub fn status_of(error: &StoreError) -> u16 {
    match error {
        StoreError::BadInput(_) | StoreError::BadBody(_) => 400,
        StoreError::TooLarge(_) => 413,
        StoreError::NoGroup(_) => 404,
        StoreError::Conflict(_) | StoreError::NotLast { .. } => 409,
        StoreError::NoSpace(_) => 507,
        StoreError::Unavailable(_) | StoreError::Closed => 503,
        StoreError::Locked(_) | StoreError::Io { .. } | StoreError::Storage(_) => 500,
    }
}

/// A response to send: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(body: impl Into<Vec<u8>>) -> Reply {
        Reply::with_type(200, "application/json", body)
    }

    pub fn with_type(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: Some(content_type),
            body: body.into(),
            extra_headers: Vec::new(),
        }
    }

    /// A plain-text error body without a content type, as cross.stream
    /// sends its 400 and 500 errors.
    pub fn error(status: u16, text: impl std::fmt::Display) -> Reply {
        Reply {
            status,
            content_type: None,
            body: text.to_string().into_bytes(),
            extra_headers: Vec::new(),
        }
    }

    /// A store failure: its status (`status_of`) and its text; a refused
    /// conditional append also names the topic's actual last id (or
    /// `none`) in `xs-last-id`.
    pub fn store_error(error: StoreError) -> Reply {
        let mut reply = Reply::error(status_of(&error), &error);
        if let StoreError::NotLast { last, .. } = &error {
            let last = last.map_or_else(|| "none".to_string(), |id| id.to_string());
            reply.extra_headers.push(("xs-last-id", last));
        }
        reply
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            content_type: None,
            body: Vec::new(),
            extra_headers: Vec::new(),
        }
    }

    pub fn not_found() -> Reply {
        Reply::status(404)
    }

    pub fn send(self, request: Request) {
        let mut headers = Vec::new();
        if let Some(content_type) = self.content_type {
            if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
                headers.push(h);
            }
        }
        for (name, value) in &self.extra_headers {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                headers.push(h);
            }
        }
        let length = self.body.len();
        let response = Response::new(
            StatusCode(self.status),
            headers,
            io::Cursor::new(self.body),
            Some(length),
            None,
        );
        // A client that went away is not an error of ours.
        let _ = request.respond(response);
    }
}

impl From<StoreError> for Reply {
    fn from(error: StoreError) -> Reply {
        Reply::store_error(error)
    }
}

/// What a handler answers.
pub enum Answer {
    /// A whole reply.
    Reply(Reply),
    /// A body the handler writes onto the connection itself (a follow, a
    /// large payload, a script's output as it comes), given the request
    /// once routing is done.
    Stream(Box<dyn FnOnce(Request)>),
}

/// A handler's outcome: its answer, or the reply that refuses the request.
pub type Handled<T = Answer> = Result<T, Reply>;

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer::Reply(reply)
    }
}

impl Answer {
    pub fn stream(write: impl FnOnce(Request) + 'static) -> Answer {
        Answer::Stream(Box::new(write))
    }

    /// Sends a handler's outcome: the route table's one send.
    pub fn send(handled: Handled, request: Request) {
        match handled {
            Ok(Answer::Reply(reply)) | Err(reply) => reply.send(request),
            Ok(Answer::Stream(write)) => write(request),
        }
    }
}

/// A chunked response written straight onto the connection.
pub struct ChunkedStream {
    out: Box<dyn Write + Send>,
}

impl ChunkedStream {
    /// Sends the status line and headers of a `200` chunked response.
    pub fn start(request: Request, content_type: &str) -> io::Result<ChunkedStream> {
        let mut out = request.into_writer();
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )?;
        out.flush()?;
        Ok(ChunkedStream { out })
    }

    /// Writes one chunk (not flushed).
    pub fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        write!(self.out, "{:x}\r\n", bytes.len())?;
        self.out.write_all(bytes)?;
        self.out.write_all(b"\r\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Ends the body.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.write_all(b"0\r\n\r\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_failure_has_its_status() {
        let cases = [
            (StoreError::BadInput("bad topic".into()), 400),
            (StoreError::BadBody("cut short".into()), 400),
            (StoreError::TooLarge(10), 413),
            (StoreError::Conflict("id taken".into()), 409),
            (
                StoreError::NotLast {
                    topic: "t".into(),
                    expected: None,
                    last: None,
                },
                409,
            ),
            (StoreError::NoSpace("disk full".into()), 507),
            (StoreError::Locked("fjall".into()), 500),
            (StoreError::Unavailable("redis away".into()), 503),
            (StoreError::Closed, 503),
            (
                StoreError::Io {
                    context: "syncing",
                    error: io::Error::other("device error"),
                },
                500,
            ),
            (StoreError::Storage("index database: broken".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(status_of(&error), status, "{error:?}");
            // A requester of a failed batch gets the same answer.
            assert_eq!(status_of(&error.relay()), status, "{error:?}");
            let reply = Reply::store_error(error.relay());
            assert_eq!(reply.status, status);
            assert_eq!(reply.body, error.to_string().into_bytes());
        }
    }
}
