//! Usage texts, one per command, plus the top-level help. Kept together so
//! the whole CLI surface can be read (and kept consistent) in one place.

/// `xs --help`.
pub const TOP: &str = "\
xs: a local-first event stream store

usage: xs <command> [args]

server:
  serve <dir>             run a store in <dir>
  check <dir>             verify a stopped store's folder

read:
  cat <addr>              print frames, oldest first; -f to follow
  tac <addr>              print frames, newest first
  last <addr> [topic] [n] the newest frame(s)
  first <addr> [topic] [n] the oldest frame(s)
  get <addr> <id>         one frame
  next <addr> <id>        the frame after <id>
  prev <addr> <id>        the frame before <id>
  cas <addr> <hash>       a payload's bytes

write:
  append <addr> <topic>   append a frame; the payload is read from stdin
  cas-post <addr>         store stdin as content; prints its hash
  remove <addr> <id>      remove a frame
  import <addr>           store one frame JSON from stdin as is
  export <addr> <folder>  the whole store to a folder (frames.jsonl, cas/)
  import <addr> <folder>  a folder written by export (or xs.nu's .export)

k/v:
  kv get|set|del <addr> <key> [json]
                          read, write or delete a JSON value
  kv ls <addr> [prefix]   list keys and values
  kv watch <addr> <key>   print the value, then every change

groups:
  consume <addr> <group> -T <topics>
                          receive a group's frames, each to one consumer
  ack <addr> <group> <id>...
                          acknowledge frames: done, never redelivered
  nack <addr> <group> <id>...
                          give frames back: redelivered now
  groups <addr>           every group: position, pending frames, consumers

nushell:
  eval <addr> [file] [-c <script>]
                          run a Nushell script on the server
  ps <addr> [--json]      actors, services, actions: state, pid, restarts
  nu [--install|--clean]  print, install or remove the xs.nu client module

other:
  metrics <addr> [--prometheus]
                          the server's counters (JSON, or Prometheus text)
  retain <addr> [--json]  retention rules: what each pattern holds, last sweep
  version <addr>          the server's version
  scru128                 make, unpack or pack SCRU128 ids
  completions <shell>     a completion script: bash, zsh, fish or nushell
  man                     the xs(1) man page, in roff (xs man | man -l -)
  help <command>          a command's usage

<addr> is where the store listens:
  /path, ./path, ../path  a store directory (its `sock`) or a socket file
  name                    the same, when `name` exists here
  :port                   http://127.0.0.1:port
  host:port, http://[user:pass@]host:port
                          HTTP over TCP (Basic auth from user:pass)

Run `xs <command> --help` for a command's options. `xs --version` prints
this binary's version.
";

pub const EVAL: &str = "\
usage: xs eval <addr> [file] [-c <script>]

Run a Nushell script on the server and print its result: a string, number
or bool bare; another value as JSON; a list as NDJSON, line by line as it
is produced; bytes as they are.

arguments:
  [file]                  the script file, or - for stdin
options:
  -c, --commands <script> the script itself
  -h, --help              print this help
";

pub const NU: &str = "\
usage: xs nu [--install | --clean] [--lib-path <dir> --autoload-path <dir>] [--yes]

Print xs.nu, the module of Nushell commands (.cat, .append, .last, .cas, …)
that run this binary against $env.XS_ADDR. `use xs.nu *` in your own nu.

--install puts it where Nushell finds it: xs.nu into a lib dir (the first
of $NU_LIB_DIRS, else <config dir>/nushell/scripts), and a one-line stub,
xs-use.nu, into a vendor autoload dir (the last of the ones that
`nu -n -c '$nu.vendor-autoload-dirs'` lists), so every new nu has the
commands. --clean removes those two files. Both ask `Proceed? (y/N)`.

options:
      --install             write xs.nu and the xs-use.nu stub
      --clean               remove them
      --lib-path <dir>      put xs.nu here (the stub then names its full path)
      --autoload-path <dir> put xs-use.nu here (give both paths or neither)
  -y, --yes                 do not ask (needed when stdin is not a terminal)
  -h, --help                print this help
";

pub const CONSUME: &str = "\
usage: xs consume <addr> <group> -T <topics> [options]

Join consumer group <group> (made on first use, with these topics) and
print the frames handed to this consumer, one JSON line each, as `xs cat`
prints them plus \"deliveries\" (1 the first time). Each frame goes to one
consumer of the group at a time. Ack a frame when done (`xs ack`); a frame
not acked within --ack-wait, nacked, or pending when this consumer goes
away is handed out again, to any consumer. Runs until interrupted.

options:
  -T, --topic <topics>     the group's topics: a,b,user.* (required)
      --ack-wait <duration>
                           redeliver an unacked frame after this: 500ms, 30s,
                           2m (default 30s)
      --max-inflight <n>   at most n unacked frames at this consumer (1000)
      --max-deliver <n>    a frame delivered more than n times goes to
                           <group>.dead, with the reason in its meta, and is
                           acked
      --start <where>      where a new group starts: new (default), first, or
                           after an id
      --name <name>        this consumer's name (default: made by the server)
      --ack-stdin          ack the frame ids read from stdin, one per line (a
                           worker running xs consume as a coprocess writes
                           back each id it finished)
  -h, --help               print this help
";

pub const ACK: &str = "\
usage: xs ack <addr> <group> [<id>...]

Acknowledge frames of a consumer group: they are done and never handed out
again. Ids come as arguments, or on stdin (whitespace separated) when none
are given. Prints {\"acked\":[...],\"unknown\":[...]}; unknown ids were not
pending (acked already, or never handed out).
";

pub const NACK: &str = "\
usage: xs nack <addr> <group> [<id>...]

Give frames of a consumer group back: they are handed out again now, to any
consumer (their delivery count goes on). Ids as for `xs ack`. Prints
{\"nacked\":[...],\"unknown\":[...]}.
";

pub const GROUPS: &str = "\
usage: xs groups <addr> [--delete <group>]

Every consumer group, one JSON line each: its topics, start, position (the
newest frame handed out), the number of pending frames, its consumers (live
ones and those holding frames, with their pending counts) and each pending
frame with its consumer, delivery count and deadline.

options:
      --delete <group>    delete the group instead: its position and pending
                          frames go (the frames themselves and <group>.dead
                          stay); its connected consumers' streams end; exit 1
                          when there is no such group
  -h, --help              print this help
";

pub const PS: &str = "\
usage: xs ps <addr> [--json]

The process table: one line per actor, service, action and view with its
state (running, backoff, stopped, failed), pid, since when, restarts since
the server started, and its last exit and error. Aligned columns on a
terminal; NDJSON with --json or when piped.

options:
      --json              NDJSON, also on a terminal
  -h, --help              print this help
";

pub const EXPORT: &str = "\
usage: xs export <addr> <folder>

Write the whole store to a new folder: frames.jsonl (every frame, as
`xs cat` prints them) and cas/ (one file per payload, named by the base64
of its hash), the layout cross.stream's xs.nu .export writes. `xs import
<addr> <folder>` reads it back: same ids, same hashes; importing twice adds
nothing.
";

pub const KV: &str = "\
usage: xs kv <action> <addr> ...

The store's k/v: keys follow the topic rules, values are JSON.

actions:
  get <addr> <key>            print the value (exit 1, no output, when absent)
  set <addr> <key> [<json>]   set the value; read from stdin when omitted
  del <addr> <key>            delete the key
  ls <addr> [prefix]          NDJSON {\"key\",\"value\"} lines in key order
  watch <addr> <key>          NDJSON: the current state, then one line per change
                              ({\"key\",\"value\"} or {\"key\",\"deleted\":true})

Keys under `view.` belong to materialized views and cannot be written.
";

pub const CAT: &str = "\
usage: xs cat <addr> [options]

Print frames as NDJSON, oldest first.

options:
  -f, --follow            keep going: print new frames as they are appended
  -p, --pulse <ms>        follow, with an xs.pulse frame every <ms>
  -n, --new               skip history: only frames appended from now on
  -a, --after <id>        start after this id (exclusive)
      --from <id>         start at this id (inclusive)
      --since <when>      start at a time: RFC 3339 or 90s / 10m / 2h / 3d ago
      --limit <n>         stop after <n> frames
      --last <n>          start with the newest <n> frames
  -T, --topic <topics>    only these topics: a,b,user.*
      --with-timestamp    add each frame's time as `timestamp`
      --sse               ask for Server-Sent Events instead of NDJSON
      --cursor <name>     resume after the id saved at k/v `cursor.<name>` and
                          save progress there (every second and on exit)
  -h, --help              print this help
";

pub const TAC: &str = "\
usage: xs tac <addr> [options]

Print frames as NDJSON, newest first.

options:
      --before <id>       start below this id (exclusive)
      --until <when>      start at a time: RFC 3339 or 90s / 10m / 2h / 3d ago
      --limit <n>         stop after <n> frames
  -T, --topic <topics>    only these topics: a,b,user.*
      --with-timestamp    add each frame's time as `timestamp`
  -h, --help              print this help
";

pub const LAST: &str = "\
usage: xs last <addr> [topics] [count] [options]

Print the newest frame (or <count> frames, oldest first) of <topics>.

options:
  -f, --follow            then keep printing new matching frames
      --with-timestamp    add each frame's time as `timestamp`
  -h, --help              print this help
";

pub const FIRST: &str = "\
usage: xs first <addr> [topics] [count] [options]

Print the oldest frame (or <count> frames) of <topics>.

options:
      --with-timestamp    add each frame's time as `timestamp`
  -h, --help              print this help
";

pub const GET: &str = "\
usage: xs get <addr> <id> [options]

Print one frame.

options:
      --with-timestamp    add the frame's time as `timestamp`
  -h, --help              print this help
";

pub const NEXT: &str = "\
usage: xs next <addr> <id> [options]

Print the frame right after <id>.

options:
  -T, --topic <topics>    the next frame of these topics
      --with-timestamp    add the frame's time as `timestamp`
  -h, --help              print this help
";

pub const PREV: &str = "\
usage: xs prev <addr> <id> [options]

Print the frame right before <id>.

options:
  -T, --topic <topics>    the previous frame of these topics
      --with-timestamp    add the frame's time as `timestamp`
  -h, --help              print this help
";

pub const CAS: &str = "\
usage: xs cas <addr> <hash>

Print the content stored under <hash> (sha256-…), byte for byte.

options:
  -h, --help              print this help
";

pub const APPEND: &str = "\
usage: xs append <addr> <topic> [options] [< payload]

Append a frame to <topic>; stdin, unless it is a terminal or --no-stdin is
given, is its payload. Prints the new frame and a newline.

options:
      --no-stdin          no payload: leave stdin alone (inside `while read`)
      --meta <json>       attach this JSON as the frame's meta
      --ttl <ttl>         forever, ephemeral, time:<ms> or last:<n>
      --with-timestamp    add the frame's time as `timestamp`
      --expect-last <id|none>
                          append only if the topic's newest frame is <id>
                          (none: the topic has no frame); else fail, naming
                          the actual last id
      --idempotency-key <key>
                          append once per key within the server's dedup
                          window; a repeat prints the original frame
  -h, --help              print this help
";

pub const CAS_POST: &str = "\
usage: xs cas-post <addr> < content

Store stdin as content; prints its hash.

options:
  -h, --help              print this help
";

pub const REMOVE: &str = "\
usage: xs remove <addr> <id>

Remove a frame.

options:
  -h, --help              print this help
";

pub const IMPORT: &str = "\
usage: xs import <addr> < frame.json
       xs import <addr> <folder>

Store one frame (JSON on stdin) exactly as given, id and hash included; or
a whole folder written by `xs export` (or xs.nu's .export): its payloads,
each checked against its name, then its frames. Importing twice adds
nothing. With a Redis address (redis://host:port/db?ns=<name>) the folder
goes straight into that namespace, no server needed: on Redis imported ids
must be above the namespace's last, so a dump goes into a fresh namespace
before any node serves it.

options:
  -h, --help              print this help
";

pub const METRICS: &str = "\
usage: xs metrics <addr> [--prometheus]

Print the server's counters: GET /metrics as one line of JSON
(cross.stream's `store` and `keyspaces`, and xs's own under `xs`), or the
Prometheus text format with --prometheus.

options:
      --prometheus        the Prometheus text format instead of JSON
  -h, --help              print this help
";

pub const RETAIN: &str = "\
usage: xs retain <addr> [--json]

The server's retention rules (`xs serve --retain`), one line per rule:
its pattern and rules, what the pattern held at the last sweep (frames,
bytes, the oldest frame and its age), what that sweep removed, and what
all sweeps removed since the server started. Aligned columns on a
terminal; NDJSON (GET /retain) with --json or when piped.

options:
      --json              NDJSON, also on a terminal
  -h, --help              print this help
";

pub const VERSION: &str = "\
usage: xs version <addr>

Print the server's version as JSON. (`xs --version` prints this binary's.)

options:
  -h, --help              print this help
";

pub const SCRU128: &str = "\
usage: xs scru128
       xs scru128 unpack <id|->
       xs scru128 pack < fields.json

With no subcommand, print a new SCRU128 id. `unpack` prints an id's fields
as JSON ({ts_ms, counter_hi, counter_lo, node}); `-` reads the id from
stdin. `pack` reads those fields from stdin and prints the id.

options:
  -h, --help              print this help
";

pub const COMPLETIONS: &str = "\
usage: xs completions bash|zsh|fish|nushell

Print a completion script for the shell: commands, their flags, flag
values, store addresses as paths, and a store's topics (the script runs
`xs __complete topics <addr>`, which reads them from the running store).

  bash     source <(xs completions bash)            (in ~/.bashrc)
  zsh      source <(xs completions zsh)             (in ~/.zshrc, after compinit)
  fish     xs completions fish > ~/.config/fish/completions/xs.fish
  nushell  xs completions nushell | save -f ~/.xs-completions.nu
           and `source ~/.xs-completions.nu` in config.nu

options:
  -h, --help              print this help
";

pub const MAN: &str = "\
usage: xs man

Print the xs(1) man page in roff: every command, the address forms, the
HTTP API, the environment and the store folder's files. Read it with
`xs man | man -l -`, or install it with `xs man > /usr/local/share/man/man1/xs.1`.

options:
  -h, --help              print this help
";
