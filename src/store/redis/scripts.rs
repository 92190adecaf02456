//! Runs `scripts.lua` by its SHA1 (EVALSHA), loading it when Redis does
//! not know it yet (a fresh or restarted Redis answers NOSCRIPT).

use std::sync::Mutex;

use redis::Value;

pub const SOURCE: &str = include_str!("scripts.lua");

#[derive(Default)]
pub struct Script {
    /// The SHA1 Redis gave for the source, once loaded.
    sha: Mutex<Option<String>>,
}

impl Script {
    /// Runs the script's operation `args[0]` with the rest as arguments.
    pub fn run(
        &self,
        con: &mut redis::Connection,
        stream_key: &str,
        prefix: &[u8],
        args: &[&[u8]],
    ) -> redis::RedisResult<Value> {
        let known = self.sha.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sha = match known {
            Some(sha) => sha,
            None => self.load(con)?,
        };
        match invoke(con, &sha, stream_key, prefix, args) {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let sha = self.load(con)?;
                invoke(con, &sha, stream_key, prefix, args)
            }
            other => other,
        }
    }

    fn load(&self, con: &mut redis::Connection) -> redis::RedisResult<String> {
        let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(SOURCE).query(con)?;
        *self.sha.lock().unwrap_or_else(|e| e.into_inner()) = Some(sha.clone());
        Ok(sha)
    }
}

fn invoke(
    con: &mut redis::Connection,
    sha: &str,
    stream_key: &str,
    prefix: &[u8],
    args: &[&[u8]],
) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(1).arg(stream_key).arg(prefix);
    for arg in args {
        cmd.arg(*arg);
    }
    cmd.query(con)
}
