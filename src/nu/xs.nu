# xs.nu: Nushell commands for an xs store.
#
# Every command runs the `xs` binary found on PATH against the store at
# $env.XS_ADDR: a store folder, a socket, `:port` or `http://host:port`.
# Without XS_ADDR the store is ~/.local/share/cross.stream/store.
#
#   use xs.nu *
#   "hello" | .append note --meta {author: ann}
#   .cat -T note | last | .cas

const DEFAULT_STORE = "~/.local/share/cross.stream/store"

# The hash of no bytes at all.
const EMPTY_HASH = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

# The store address the commands use.
export def xs-addr []: nothing -> string {
  let addr = $env.XS_ADDR? | default $DEFAULT_STORE
  if ($addr | str starts-with "~") { $addr | path expand } else { $addr }
}

# Runs `xs <args>` to the end: its stdout, or null when the store has no
# such thing (exit 1 and nothing on stderr); any other failure is an error.
def run-xs [...args: string]: any -> any {
  let result = $in | ^xs ...$args | complete
  if $result.exit_code == 0 {
    return $result.stdout
  }
  let message = $result.stderr | str trim
  if $result.exit_code == 1 and ($message | is-empty) {
    return null
  }
  error make {msg: $"xs ($args | first): ($message)"}
}

# A value as the bytes of a payload: strings and binary as they are,
# records and lists as JSON, nothing as no bytes, anything else as text.
def to-payload []: any -> any {
  let value = $in
  let kind = $value | describe
  if $kind == "nothing" {
    ""
  } else if $kind in ["string" "binary"] {
    $value
  } else if ($kind | str starts-with "record") or ($kind | str starts-with "list") or ($kind | str starts-with "table") {
    $value | to json --raw
  } else {
    $value | into string
  }
}

# One line of frame JSON as a record; `timestamp` becomes a datetime and,
# unless `keep_ttl`, `ttl` is left out.
def to-frame [keep_ttl: bool]: string -> record {
  let frame = $in | from json
  let frame = if "timestamp" in ($frame | columns) {
    $frame | update timestamp { into datetime }
  } else {
    $frame
  }
  if $keep_ttl { $frame } else { $frame | reject --optional ttl }
}

# NDJSON text or stream as a list of frame records.
def to-frames [keep_ttl: bool]: any -> list<record> {
  lines | where $it != "" | each {|line| $line | to-frame $keep_ttl }
}

# Topics as `xs` takes them: one spec, a,b,c.
def topic-spec [topic: any]: nothing -> string {
  if ($topic | describe | str starts-with "list") {
    $topic | str join ","
  } else {
    $topic | into string
  }
}

# Read frames, oldest first. Follows (as a stream) with --follow or --pulse.
export def .cat [
  --follow (-f)                          # keep going: new frames as they land
  --pulse (-p): int                      # follow, with an xs.pulse frame every <ms>
  --new (-n)                             # skip history
  --detail (-d)                          # keep each frame's ttl
  --limit: int                           # at most this many frames
  --after (-a): string                   # start after this id
  --from: string                         # start at this id
  --last: int                            # start with the newest <n> frames
  --topic (-T): oneof<list<string>, string> # only these topics: "a,b,user.*" or [a b]
  --with-timestamp                       # add each frame's time as a datetime
]: nothing -> any {
  mut args = [cat (xs-addr)]
  if $follow { $args = ($args | append "--follow") }
  if $pulse != null { $args = ($args | append ["--pulse" ($pulse | into string)]) }
  if $new { $args = ($args | append "--new") }
  if $limit != null { $args = ($args | append ["--limit" ($limit | into string)]) }
  if $after != null { $args = ($args | append ["--after" $after]) }
  if $from != null { $args = ($args | append ["--from" $from]) }
  if $last != null { $args = ($args | append ["--last" ($last | into string)]) }
  if $topic != null { $args = ($args | append ["--topic" (topic-spec $topic)]) }
  if $with_timestamp { $args = ($args | append "--with-timestamp") }
  let args = $args
  ^xs ...$args | to-frames $detail
}

# The newest frame, or frames: each int argument is the count, anything
# else the topic. One frame comes back as a record, several as a table.
export def .last [
  ...args: any       # [topic] [count], in either order
  --follow (-f)      # then stream new matching frames
  --with-timestamp   # add each frame's time as a datetime
]: nothing -> any {
  mut count = 1
  mut topic: any = null
  for arg in $args {
    let text = $arg | into string
    if ($arg | describe) == "int" or ($text =~ '^[0-9]+$') {
      $count = ($text | into int)
    } else {
      $topic = (topic-spec $arg)
    }
  }
  mut xs_args = [last (xs-addr)]
  if $topic != null { $xs_args = ($xs_args | append $topic) }
  $xs_args = ($xs_args | append ($count | into string))
  if $with_timestamp { $xs_args = ($xs_args | append "--with-timestamp") }
  if $follow {
    let xs_args = $xs_args | append "--follow"
    return (^xs ...$xs_args | to-frames true)
  }
  let out = run-xs ...$xs_args
  if $out == null { return null }
  let frames = $out | to-frames true
  if $count <= 1 { $frames | get --optional 0 } else { $frames }
}

# Append a frame to <topic>; the pipeline input is its payload (records and
# lists as JSON). Returns the new frame. With --expect-last, an error unless
# the topic's newest frame is that id; with --idempotency-key, a repeat within
# the server's dedup window returns the original frame.
export def .append [
  topic: string      # the frame's topic
  --meta: record     # the frame's meta
  --ttl: string      # forever, ephemeral, time:<ms> or last:<n>
  --with-timestamp   # add the frame's time as a datetime
  --expect-last: string      # append only if the topic's newest frame is this id (none: no frame)
  --idempotency-key: string  # append once per key within the dedup window
]: any -> record {
  let payload = $in | to-payload
  mut args = [append (xs-addr) $topic]
  if $meta != null { $args = ($args | append ["--meta" ($meta | to json --raw)]) }
  if $ttl != null { $args = ($args | append ["--ttl" $ttl]) }
  if $with_timestamp { $args = ($args | append "--with-timestamp") }
  if $expect_last != null { $args = ($args | append ["--expect-last" $expect_last]) }
  if $idempotency_key != null { $args = ($args | append ["--idempotency-key" $idempotency_key]) }
  let args = $args
  $payload | run-xs ...$args | to-frame true
}

# One frame by id (nothing when there is none).
export def .get [
  id: string         # the frame's id
  --with-timestamp   # add the frame's time as a datetime
]: nothing -> any {
  let args = if $with_timestamp { [get (xs-addr) $id --with-timestamp] } else { [get (xs-addr) $id] }
  let out = run-xs ...$args
  if $out == null { null } else { $out | to-frame true }
}

# Content by hash: text when it is UTF-8, else binary. Takes a hash, or a
# frame (its `hash`); a frame without content gives nothing.
export def .cas [
  hash?: any   # a hash (sha256-…) or a frame record; else the pipeline input
]: any -> any {
  let given = if $hash == null { $in } else { $hash }
  let hash = if ($given | describe | str starts-with "record") { $given.hash? } else { $given }
  if $hash == null { return null }
  let out = run-xs cas (xs-addr) $hash
  if $out != null { return $out }
  # The server stores no empty content, yet frames can name it (an import).
  if $hash == $EMPTY_HASH { return "" }
  error make {msg: $"no content for ($hash)"}
}

# Store the pipeline input as content; returns its hash.
export def .cas-post []: any -> string {
  let input = $in
  if $input == null { error make {msg: "Empty input"} }
  $input | to-payload | run-xs cas-post (xs-addr) | str trim
}

# Remove a frame.
export def .remove [
  id: string   # the frame's id
]: nothing -> nothing {
  run-xs remove (xs-addr) $id | ignore
}

# Remove a frame.
export alias .rm = .remove

# Acknowledge frames a consumer group handed out (`xs consume`): they are
# done and never handed out again. {acked, unknown}: unknown ids were not
# pending.
export def .ack [
  group: string   # the consumer group
  ...ids: string  # frame ids
]: nothing -> record {
  run-xs ack (xs-addr) $group ...$ids | from json
}

# Hand frames of a consumer group out again now. {nacked, unknown}.
export def .nack [
  group: string   # the consumer group
  ...ids: string  # frame ids
]: nothing -> record {
  run-xs nack (xs-addr) $group ...$ids | from json
}

# The store's consumer groups: topics, position, pending frames and who
# holds them. With --delete, deletes that group instead (an error when
# there is none).
export def .groups [
  --delete: string   # the group to delete: its position and pending frames
]: nothing -> any {
  if $delete != null {
    run-xs groups (xs-addr) "--delete" $delete | ignore
    return
  }
  run-xs groups (xs-addr) | lines | each { from json }
}

# Run a Nushell script on the server: a file, -c '<script>', or the script
# as pipeline input. Its output comes back as xs eval prints it.
export def .eval [
  file?: path                 # a script file
  --commands (-c): string     # the script itself
]: any -> any {
  let input = $in
  if $file != null and $commands != null {
    error make {msg: "cannot specify both file and -c"}
  }
  if $commands != null {
    ^xs eval (xs-addr) --commands $commands
  } else if $file != null {
    ^xs eval (xs-addr) ($file | path expand)
  } else if $input != null {
    $input | ^xs eval (xs-addr) -
  } else {
    error make {msg: "provide a script file, -c '<script>' or a piped script"}
  }
}

# A new SCRU128 id.
export def .id []: nothing -> string {
  ^xs scru128 | str trim
}

# An id's fields: {ts_ms, when, counter_hi, counter_lo, node}.
export def ".id unpack" [
  id?: string   # the id; else the pipeline input
]: any -> record {
  let id = if $id == null { $in } else { $id }
  if $id == null { error make {msg: "no id given"} }
  let fields = ^xs scru128 unpack ($id | into string | str trim) | from json
  # Datetimes count nanoseconds in an i64: past the year 2262 there is none.
  let when = if $fields.ts_ms < 9_223_372_036_854 {
    $fields.ts_ms * 1_000_000 | into datetime
  } else {
    null
  }
  {
    ts_ms: $fields.ts_ms
    when: $when
    counter_hi: $fields.counter_hi
    counter_lo: $fields.counter_lo
    node: $fields.node
  }
}

# The id with these fields (`when` is ignored: ts_ms counts).
export def ".id pack" [
  fields?: record   # as `.id unpack` gives; else the pipeline input
]: any -> string {
  let fields = if $fields == null { $in } else { $fields }
  if $fields == null { error make {msg: "no fields given"} }
  $fields | reject --optional when | to json --raw | ^xs scru128 pack | str trim
}

# Save the whole store into a new folder: frames.jsonl plus each payload
# as cas/<base64 of its hash>.
export def .export [
  path: path   # the folder to create; must not exist yet
]: nothing -> nothing {
  let path = $path | path expand
  if ($path | path exists) {
    error make {msg: $"($path) already exists"}
  }
  let cas = $path | path join cas
  mkdir $cas
  let frames_file = $path | path join frames.jsonl
  ^xs cat (xs-addr) | save --raw $frames_file
  open --raw $frames_file
  | lines
  | where $it != ""
  | each {|line| ($line | from json).hash? }
  | compact
  | uniq
  | each {|hash|
    let out = run-xs cas (xs-addr) $hash
    let out = if $out == null and $hash == $EMPTY_HASH { "" } else { $out }
    if $out == null {
      error make {msg: $"no content for ($hash)"}
    }
    $out | save --raw ($cas | path join ($hash | encode base64))
  }
  | ignore
}

# Load a folder written by .export: every cas/ file (its hash checked
# against its name), then every frame of frames.jsonl, ids kept.
export def .import [
  path: path   # the folder .export wrote
]: nothing -> nothing {
  let path = $path | path expand
  let frames_file = $path | path join frames.jsonl
  if not ($frames_file | path exists) {
    error make {msg: $"($frames_file) not found"}
  }
  let cas = $path | path join cas
  if ($cas | path exists) {
    ls $cas | where type == file | get name | each {|file|
      let want = $file | path basename | decode base64 | decode utf-8
      let content = open --raw $file | into binary
      # The server stores no empty content; such a frame keeps its hash.
      if ($content | bytes length) > 0 {
        let got = $content | run-xs cas-post (xs-addr) | str trim
        if $got != $want {
          error make {msg: $"cas/($file | path basename) holds content that hashes to ($got), not ($want)"}
        }
      }
    } | ignore
  }
  open --raw $frames_file
  | lines
  | where $it != ""
  | each {|line| $line | run-xs import (xs-addr) | ignore }
  | ignore
}

# Run <closure> against a throwaway store: a temp folder, `xs serve` in the
# background, XS_ADDR pointing at it. The server is stopped and the folder
# removed afterwards. With -i, an interactive `nu` runs after the closure
# and the server stops when it exits.
export def .tmp-spawn [
  closure: closure     # what to run while the store is up
  --interactive (-i)   # then open an interactive nu on the store
]: nothing -> any {
  let dir = mktemp --directory --tmpdir xs-tmp.XXXXXX
  let store = $dir | path join store
  let log = $dir | path join serve.log
  let server = job spawn { ^xs serve $store out+err> $log }
  mut ready = false
  for _ in 1..1000 {
    if (^xs cat $store --last 1 | complete | get exit_code) == 0 {
      $ready = true
      break
    }
    sleep 10ms
  }
  if not $ready {
    job kill $server
    let output = open --raw $log
    rm --recursive --force $dir
    error make {msg: $"xs serve ($store) did not come up: ($output)"}
  }
  let outcome = with-env {XS_ADDR: $store} {
    try {
      let value = do $closure | collect
      if $interactive { ^$nu.current-exe }
      {value: $value}
    } catch {|err| {error: $err} }
  }
  # Followers the closure dropped are still waiting on the store: stop them
  # with it, rather than have them report its end.
  ps --long
  | where ppid == $nu.pid and name == "xs" and ($it.command | str contains $store)
  | where not ($it.command | str contains " serve ")
  | each {|child| kill --force $child.pid }
  | ignore
  job kill $server
  rm --recursive --force $dir
  if "error" in $outcome { $outcome.error.raw } else { $outcome.value }
}
