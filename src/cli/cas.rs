//! `xs cas <addr> <hash>`: a payload's bytes.
//!
//! Always through the server (`GET /cas/<hash>`), never by reading the
//! store folder as cross.stream's client does: that way ephemeral payloads,
//! Redis-backed stores and remote stores all answer the same way.

use std::ffi::OsString;

use super::address::Address;
use super::args::{only_positionals, usage, Stop};
use super::client::{call, Request};
use super::output::{body_to_stdout, Lines};

/// `xs cas <addr> <hash>`: the raw content on stdout; missing content is a
/// silent exit 1 (the server's 404).
pub fn cas(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr, hash] = only_positionals(args, ["addr", "hash"])?;
    check_hash_text(&hash)?;
    let address = Address::parse(&addr)?;
    let mut response = call(&address, Request::get(format!("/cas/{hash}")))?;
    body_to_stdout(&mut response.body, Lines::Verbatim)
}

/// The hash goes into the request path raw (SRI base64 has `/` and `+`,
/// which the server takes literally), so only characters that cannot break
/// the request line or start a query are allowed. Whether it is a valid
/// SRI is the server's call, with its own error text.
fn check_hash_text(hash: &str) -> Result<(), Stop> {
    let fits = !hash.is_empty()
        && hash
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if fits {
        Ok(())
    } else {
        Err(usage(format!("Invalid CAS hash: {hash:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_go_into_the_path_raw() {
        assert!(check_hash_text("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").is_ok());
        for bad in ["", "a b", "a?b", "a#b", "a\r\nb", "é"] {
            assert!(check_hash_text(bad).is_err(), "{bad:?}");
        }
    }
}
