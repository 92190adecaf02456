//! `--auth-file` credentials and the Basic-auth check on an exposed TCP
//! listener (SPEC 10).
//!
//! How it works: `xs serve` reads the file once, before it opens the store
//! or binds anything, so a bad file refuses to start and nothing listens.
//! The file is one `user:password` line: a non-empty user, a password of at
//! least `MIN_PASSWORD` characters (`:` alone would let `curl -u :` run
//! programs through `/eval`), and not readable or writable by group or
//! others (`chmod 600`), as ssh treats a private key. Each request then
//! carries `Authorization: Basic <base64 of user:password>`; the scheme name
//! is case-insensitive (RFC 9110 §11.1) and the decoded bytes are compared in
//! constant time.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

/// The `user:password` every request on a listener must present.
#[derive(Clone)]
pub struct Credentials {
    /// `user:password`, as the Basic scheme carries it (decoded).
    pair: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// Reads and checks an auth file; the error is one line saying what to
    /// fix.
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let shown = path.display();
        let metadata =
            std::fs::metadata(path).map_err(|e| format!("cannot read --auth-file {shown}: {e}"))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "--auth-file {shown} is open to group or others (mode {:o}): run `chmod 600 {shown}`",
                metadata.permissions().mode() & 0o777
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --auth-file {shown}: {e}"))?;
        Credentials::parse(&text).map_err(|e| format!("--auth-file {shown}: {e}"))
    }

    /// The file's text: one `user:password` line (the password may hold
    /// `:`; the user cannot, as in Basic auth).
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let line = lines
            .next()
            .ok_or("expected one user:password line, found none")?;
        if lines.next().is_some() {
            return Err("expected one user:password line, found more".into());
        }
        let (user, password) = line
            .split_once(':')
            .ok_or("expected one user:password line")?;
        if user.is_empty() {
            return Err("the user is empty".into());
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(format!(
                "the password must be at least {MIN_PASSWORD} characters"
            ));
        }
        Ok(Credentials {
            pair: line.as_bytes().to_vec(),
        })
    }

    /// Whether an `Authorization` header value carries these credentials.
    pub fn accepts(&self, authorization: &str) -> bool {
        let mut parts = authorization.trim().splitn(2, [' ', '\t']);
        let scheme = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default().trim();
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        match base64::engine::general_purpose::STANDARD.decode(token) {
            Ok(given) => constant_time_eq(&given, &self.pair),
            Err(_) => false,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(scheme: &str, pair: &str) -> String {
        format!(
            "{scheme} {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[test]
    fn a_usable_file_is_one_line_with_a_user_and_a_long_password() {
        assert!(Credentials::parse("ann:twelve-chars\n").is_ok());
        assert!(Credentials::parse("\nann:has:colons:in:it\n\n").is_ok());
        for (text, why) in [
            ("", "none"),
            (":", "user is empty"),
            (":twelve-chars", "user is empty"),
            ("ann:", "at least 12"),
            ("ann:eleven-char", "at least 12"),
            ("justauser", "user:password"),
            ("ann:twelve-chars\nbob:twelve-chars", "more"),
        ] {
            match Credentials::parse(text) {
                Err(e) => assert!(e.contains(why), "{text:?}: {e}"),
                Ok(_) => panic!("{text:?} accepted"),
            }
        }
        // Characters, not bytes: twelve of them.
        assert!(Credentials::parse("ann:éééééééééééé").is_ok());
        assert!(Credentials::parse("ann:ééééééééééé").is_err());
    }

    #[test]
    fn the_scheme_name_is_case_insensitive_the_credentials_are_not() {
        let credentials = Credentials::parse("ann:twelve-chars").unwrap();
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert!(credentials.accepts(&basic(scheme, "ann:twelve-chars")));
        }
        assert!(credentials.accepts(&format!("  {}  ", basic("Basic", "ann:twelve-chars"))));
        assert!(!credentials.accepts(&basic("Basic", "ann:twelve-charS")));
        assert!(!credentials.accepts(&basic("Basic", "Ann:twelve-chars")));
        assert!(!credentials.accepts(&basic("Bearer", "ann:twelve-chars")));
        assert!(!credentials.accepts(&basic("Basic", "")));
        assert!(!credentials.accepts("Basic not-base64!"));
        assert!(!credentials.accepts("Basic"));
        assert!(!credentials.accepts(""));
    }

    #[test]
    fn a_file_open_to_others_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("auth");
        std::fs::write(&path, "ann:twelve-chars\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Credentials::from_file(&path).unwrap_err();
            assert!(e.contains("chmod 600"), "{mode:o}: {e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Credentials::from_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Credentials::from_file(&path).is_ok());
    }
}
