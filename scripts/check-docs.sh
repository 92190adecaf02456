#!/usr/bin/env bash
# check-docs.sh: run the documentation's examples and compare their output
# with what the pages show.
#
# How it works: for each page checked, the ```console blocks are read in
# order; each `$ command` line runs in one bash (so `&`, `%1`, `wait` and
# `$?` mean what they mean at a prompt) in a fresh folder, and what it
# prints (stdout and stderr) is compared with the lines the page shows
# under it. A line ending in `\` goes on on the next line, as in bash.
# Ids, times and timestamps vary from run to run: the first time a page's
# id meets the real id at the same place, the two are paired, later
# commands get the real id in place of the page's, and the comparison
# wants every later sighting to agree with that pairing. HTTP `Date:`
# headers are not compared, nor the CRs ending curl -i's header lines.
# Payload hashes are compared as they are (the same bytes give the same
# hash). A `$ cat <file>` whose file does not exist creates it from the
# lines the page shows; a code block after "Save it as `<file>`:" is saved
# there. A `xs serve … &` line waits until the store answers; a
# `xs cat … -f` line (another terminal, in the README) runs in the
# background and is compared once the page is done. http-api.md's curl
# lines are run one by one.
# `skipped` and `varies` below name the few commands that are not run or
# whose output changes beyond ids and times. A command still running after
# $CMD_LIMIT seconds (60) fails its page (a wait loop whose condition a
# wrong page never meets).
#
# Usage: scripts/check-docs.sh [page.md … | http-api]
# Default: README.md, docs/cli.md, docs/kv-and-views.md, docs/http-api.md,
# docs/nushell.md, docs/event-sourcing/cond.md and groups.md (some 25 s).
# Other pages run too, but may need more (a terminal for `xs ps`'s table,
# Redis, curl's progress meter hidden).
# The binary is $XS_BIN, else target/release/xs, else `xs` on PATH.
# Exits 1 with a diff (page's lines `-`, real output `+`) on a mismatch.

set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${XS_BIN:-}" ]; then
    if [ -x "$ROOT/target/release/xs" ]; then
        XS_BIN=$ROOT/target/release/xs
    else
        XS_BIN=$(command -v xs) || { echo "check-docs: no xs: set XS_BIN" >&2; exit 2; }
    fi
fi
case $XS_BIN in /*) ;; *) XS_BIN=$(pwd)/$XS_BIN ;; esac
[ -x "$XS_BIN" ] || { echo "check-docs: $XS_BIN is not executable" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-docs.XXXXXX")
mkdir -p "$WORK/bin"
ln -s "$XS_BIN" "$WORK/bin/xs"
export PATH="$WORK/bin:$PATH"
cleanup() {
    # Servers the pages started and did not stop: stop them by pid.
    for p in "$WORK"/*/serve.pids; do
        [ -f "$p" ] && while read -r pid; do kill "$pid" 2>/dev/null; done < "$p"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

FAILED=0
CMD_LIMIT=${CMD_LIMIT:-60}

# The page's commands and the lines shown under each, as records:
# "C <command>", "O <line>", "F <file>" then "W <line>" (a file to write).
extract() {
    awk '
    /^```console/ { inblk = 1; next }
    /^```/ && inblk { inblk = 0; next }
    /^```/ && !inblk && saveas != "" { print "F " saveas; infile = 1; saveas = ""; next }
    /^```/ && infile { infile = 0; next }
    infile { print "W " $0; next }
    !inblk && /Save it as$/ { pend = 1; next }
    !inblk && match($0, /[Ss]ave it as `[^`]+`/) { s = substr($0, RSTART, RLENGTH); sub(/^[^`]*`/, "", s); sub(/`$/, "", s); saveas = s; next }
    !inblk && pend && match($0, /^`[^`]+`:/) { s = substr($0, 2, RLENGTH - 3); saveas = s; pend = 0; next }
    !inblk { pend = 0; next }
    # A command ending in a backslash goes on on the next line: the two
    # are joined, as bash joins them.
    inblk && cont { c = c $0; if (!sub(/\\$/, "", c)) { print "C " c; cont = 0 }; next }
    inblk && /^\$ / { c = substr($0, 3); if (sub(/\\$/, "", c)) cont = 1; else print "C " c; next }
    inblk { print "O " $0 }
    ' "$1"
}

# Ids become the page's ids they are paired with (pairing new ones as
# they are met line by line), unpaired ids become <id>, times <time>.
# With vary=1 (a command whose output holds things that change, such as a
# clock's), payload hashes are paired the same way and a bare HH:MM:SS is
# a <time>. Args: map file, expected file, actual file, vary; rewrites the
# expected and actual files.
normalise() {
    awk -v mapf="$1" -v ef="$2" -v af="$3" -v vary="${4:-0}" '
    # The ids (and with vary the hashes) in s, in order, into arr.
    function tokens(s, arr,   n, t) {
        n = 0
        while (match(s, TOKRE)) {
            t = substr(s, RSTART, RLENGTH)
            sub(/^[^0-9a-z]/, "", t)
            if (t ~ /^sha256-/) t = substr(t, 1, 51); else t = substr(t, 1, 25)
            arr[++n] = t
            s = substr(s, RSTART + RLENGTH - 1)
        }
        return n
    }
    # s with every literal a replaced by b.
    function repl(s, a, b,   i, out) {
        out = ""
        while ((i = index(s, a)) > 0) { out = out substr(s, 1, i - 1) b; s = substr(s, i + length(a)) }
        return out s
    }
    function times(s) {
        # curl -i shows the headers with CRLF, which a terminal does not show.
        sub(/\r$/, "", s)
        sub("^Date: " L L L ", " D D " " L L L " " D D D D " " D D ":" D D ":" D D " GMT$", "Date: <date>", s)
        gsub(D D D D "-" D D "-" D D "T" D D ":" D D ":" D D "(\\.[0-9]+)?(Z|[+-]" D D ":" D D ")", "<timestamp>", s)
        gsub("^" D D ":" D D ":" D D "\\." D D D " " A A A A A " ", "<time> <id5> ", s)
        gsub(/"(ts_ms|counter_hi|counter_lo)": [0-9]+/, "\"<n>\": <n>", s)
        gsub(/"node": "[0-9a-f]+"/, "\"node\": \"<n>\"", s)
        if (vary) gsub("^" D D ":" D D ":" D D "$", "<time>", s)
        return s
    }
    BEGIN {
        # mawk has no {n} intervals: spell the patterns out.
        D = "[0-9]"; A = "[0-9a-z]"; L = "[A-Za-z]"; IDRE = "0"
        for (i = 0; i < 24; i++) IDRE = IDRE A
        B = "[0-9A-Za-z+/]"; HRE = "sha256-"
        for (i = 0; i < 43; i++) HRE = HRE B
        TOKRE = "(^|[^0-9A-Za-z+/])(" IDRE (vary ? "|" HRE "=" : "") ")([^0-9A-Za-z+/=]|$)"
        while ((getline l < mapf) > 0) { split(l, p, " "); d2r[p[1]] = p[2]; r2d[p[2]] = p[1] }
        ne = 0; while ((getline l < ef) > 0) e[++ne] = l
        na = 0; while ((getline l < af) > 0) a[++na] = l
        for (i = 1; i <= ne && i <= na; i++) {
            delete ei; delete ai
            m = tokens(e[i], ei); k = tokens(a[i], ai)
            if (m != k) continue
            for (j = 1; j <= m; j++)
                if (!(ei[j] in d2r) && !(ai[j] in r2d) && ei[j] != ai[j]) {
                    d2r[ei[j]] = ai[j]; r2d[ai[j]] = ei[j]
                    print ei[j], ai[j] >> mapf
                }
        }
        for (i = 1; i <= ne; i++) {
            s = e[i]; delete ei; m = tokens(s, ei)
            for (j = 1; j <= m; j++) if (!(ei[j] in d2r) && ei[j] !~ /^sha256-/) s = repl(s, ei[j], "<id>")
            print times(s) > ef
        }
        for (i = 1; i <= na; i++) {
            s = a[i]; delete ai; k = tokens(s, ai)
            for (j = 1; j <= k; j++)
                if (ai[j] in r2d) s = repl(s, ai[j], r2d[ai[j]])
                else if (ai[j] !~ /^sha256-/) s = repl(s, ai[j], "<id>")
            print times(s) > af
        }
    }'
}

# The page's ids (and paired hashes) in a command become the real ones.
real_ids() {
    awk -v mapf="$1" -v cmd="$2" 'BEGIN {
        while ((getline l < mapf) > 0) {
            split(l, p, " "); out = ""; s = cmd
            while ((i = index(s, p[1])) > 0) { out = out substr(s, 1, i - 1) p[2]; s = substr(s, i + length(p[1])) }
            cmd = out s
        }
        print cmd
    }'
}

compare() { # label expected actual
    diff -u --label "$1 (page)" --label "$1 (real)" "$2" "$3"
}

# Waits (up to 10 s) until the store a `xs serve <dir>` line names answers.
wait_served() {
    local sdir i; sdir=$(printf '%s\n' "$1" | awk '{ for (i = 1; i < NF; i++) if ($i == "serve") { print $(i + 1); exit } }')
    i=0
    while ! xs version "$sdir" > /dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "check-docs: $sdir never answered" >&2; return 1; }
        sleep 0.05
    done
}

# Page commands not run: the plugin example needs the nushell-plugins
# build (and a plugin).
skipped() {
    case "$1:$2" in
    nushell:*--plugin* | nushell:*./plugged*) return 0 ;;
    esac
    return 1
}

# Page commands whose output changes from run to run beyond ids and times:
# a clock service's payload (its hash, and the time it holds).
varies() {
    case "$1:$2" in
    "nushell:xs cat ./store -T clock.recv"* | "nushell:xs cas ./store sha256-7fy/"*) return 0 ;;
    esac
    return 1
}

check_page() { # page.md
    __page=$1; __name=$(basename "$__page" .md)
    __dir="$WORK/$__name"; mkdir -p "$__dir"; : > "$__dir/map"
    extract "$__page" > "$__dir/records"
    echo "== $__name"
    (
        # The page's commands run in this shell: its own variables are
        # named __* so that theirs (`for n in …`) do not overwrite them.
        cd "$__dir" || exit 1
        __n=0; __cmd=; __file=; __follows=; __rc=0
        # The watchdog below asks a command that runs too long to stop (a
        # wait for a condition a wrong page never meets): the page fails.
        trap 'exit 1' USR1
        eval_compare() {
            # A blank line ends what a command shows on the page.
            sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "exp.$__n" > exp.tmp && mv exp.tmp "exp.$__n"
            # $? in a command is the status of the command before it.
            (exit "$__rc"); eval "$__real" < /dev/null > "act.$__n" 2>&1
            __rc=$?
            __vary=0; varies "$__name" "$__cmd" && __vary=1
            normalise "$__dir/map" "$__dir/exp.$__n" "$__dir/act.$__n" $__vary
            compare "$__name: \$ $__cmd" "$__dir/exp.$__n" "$__dir/act.$__n" || echo 1 > failed
        }
        flush() {
            [ -n "$__cmd" ] || return 0
            __n=$((__n + 1))
            if skipped "$__name" "$__cmd"; then
                echo "$__name: not run: \$ $__cmd"
                __cmd=; return 0
            fi
            __real=$(real_ids "$__dir/map" "$__cmd")
            printf '%s\n' "$__cmd" > running
            case $__real in
            "cat "*)
                __f=${__real#cat }
                [ -e "$__f" ] || cp "$__dir/exp.$__n" "$__f"
                ;;
            esac
            case $__real in
            *"xs serve "*"&")
                # Its log lines go to the terminal in the page; here they
                # are not compared.
                case $__real in *"2>"*) ;; *) __real="${__real%&} 2>> serve.log &" ;; esac
                eval "$__real" < /dev/null > /dev/null
                echo $! >> serve.pids
                wait_served "$__real" || echo 1 > failed
                ;;
            "timeout "*) eval_compare ;;
            *"xs cat "*" -f"*)
                eval "$__real" < /dev/null > "act.$__n" 2>&1 &
                __follows="$__follows $__n"
                # Let it subscribe before the next command appends.
                sleep 0.3
                ;;
            *) eval_compare ;;
            esac
            printf '%s\n' "$__cmd" > "cmd.$__n"
            __cmd=
        }
        : > exp.0
        while IFS= read -r __rec <&3; do
            __kind=${__rec%% *}; __line=${__rec#? }
            case $__kind in
            C) flush; __cmd=$__line; : > "exp.$((__n + 1))" ;;
            O) printf '%s\n' "$__line" >> "exp.$((__n + 1))" ;;
            F) flush; __file=$__line; : > "$__file" ;;
            W) printf '%s\n' "$__line" >> "$__file" ;;
            esac
        done 3< records
        flush
        rm -f running
        for __k in $__follows; do
            normalise "$__dir/map" "$__dir/exp.$__k" "$__dir/act.$__k"
            compare "$__name: (followed) \$ $(cat "cmd.$__k")" "$__dir/exp.$__k" "$__dir/act.$__k" || echo 1 > failed
        done
    ) &
    watchdog $! "$__dir" "$__name"
    [ -f "$__dir/failed" ] && FAILED=1
}

# Waits for a page's shell (pid $1, folder $2, page $3) to end; once a
# command has run for $CMD_LIMIT seconds (the folder's `running` that
# old), the page fails: the shell is asked to stop (USR1, which it heeds
# between two commands, as in a wait loop), and 5 s later stopped.
watchdog() {
    local t=0 since
    while kill -0 "$1" 2>/dev/null; do
        sleep 0.2
        since=$(stat -c %Y "$2/running" 2>/dev/null) || continue
        [ $(($(date +%s) - since)) -ge "$CMD_LIMIT" ] || continue
        if [ $t -eq 0 ]; then
            echo "$3: \$ $(cat "$2/running")"
            echo "  still running after ${CMD_LIMIT}s: stopped"
            echo 1 > "$2/failed"
            kill -USR1 "$1" 2>/dev/null
        fi
        t=$((t + 1))
        [ $t -eq 25 ] && kill "$1" 2>/dev/null
    done
    wait "$1"
}

# http-api.md: every curl line of "With curl" against a store holding a
# user frame (<id>) and a note (<sri>, its payload), wanting a 2xx, or the
# status its comment names; follows run for a second. Then its metrics
# example on a new store after three appends with one follower.
check_http_api() {
    page=$ROOT/docs/http-api.md
    dir="$WORK/http-api"; mkdir -p "$dir"
    echo "== http-api"
    (
        cd "$dir" || exit 1
        xs serve ./store 2> serve.log < /dev/null &
        echo $! >> serve.pids
        wait_served "xs serve ./store &" || exit 1
        echo 'hello' > file
        xs append ./store user.ann --no-stdin > /dev/null
        echo 'hi' | xs append ./store note > /dev/null
        id=$(xs last ./store user.ann | sed 's/.*"id":"\([^"]*\)".*/\1/')
        sri=$(xs last ./store note | sed 's/.*"hash":"\([^"]*\)".*/\1/')
        echo '{"topic":"imported","id":"03hb7x0xirhhc9clynoe0k7aa","hash":null,"meta":null,"ttl":"forever"}' > frame.json
        awk '/^## With curl/ { f = 1 } f && /^```sh/ { b = 1; next } b && /^```/ { exit }
             b { if (sub(/\\$/, "")) { acc = acc $0; next } print acc $0; acc = "" }' "$page" > lines
        n=0
        while IFS= read -r line <&3; do
            case $line in curl*) ;; *) eval "$line"; continue ;; esac
            n=$((n + 1))
            want=$(printf '%s\n' "$line" | sed -n 's/.*# *\([0-9][0-9][0-9]\)\b.*/\1/p')
            cmd=$(printf '%s\n' "$line" | sed 's/ *#.*$//; s/<id>/'"$id"'/g; s|<sri>|'"$sri"'|g')
            case $cmd in *"-sN "*) cmd="curl -m 1 ${cmd#curl }" ;; esac
            code=$(eval "$cmd -o out.$n -w '%{http_code}'" < /dev/null)
            case $want in
            "") case $code in 2??) ok=1 ;; *) ok= ;; esac ;;
            *) [ "$code" = "$want" ] && ok=1 || ok= ;;
            esac
            if [ -z "$ok" ]; then
                echo "http-api: \$ $line"
                echo "  status $code, wanted ${want:-2xx}: $(head -c 200 "out.$n")"
                echo 1 > failed
            fi
        done 3< lines
        kill "$(head -1 serve.pids)"; wait
        rm -rf store; : > serve.pids
        xs serve ./store 2> serve.log < /dev/null &
        echo $! >> serve.pids
        wait_served "xs serve ./store &" || exit 1
        for t in a b c; do xs append ./store "$t" --no-stdin > /dev/null; done
        xs cat ./store -f > /dev/null &
        fpid=$!
        i=0
        until xs metrics ./store | grep -q '"followers":1'; do
            i=$((i + 1)); [ $i -gt 200 ] && break; sleep 0.05
        done
        awk '/^```console/ { b = 1; next } b && /^```/ { exit } b' "$page" > block
        sed -n 's/^\$ //p' block > cmd
        sed '/^\$ /d' block > exp
        sh cmd > act 2>&1
        compare "http-api: \$ $(cat cmd)" exp act || echo 1 > failed
        kill "$fpid"
        kill "$(head -1 serve.pids)"; wait
    )
    [ -f "$dir/failed" ] && FAILED=1
}

if [ $# -eq 0 ]; then
    set -- "$ROOT/README.md" "$ROOT/docs/cli.md" "$ROOT/docs/kv-and-views.md" http-api \
        "$ROOT/docs/nushell.md" "$ROOT/docs/event-sourcing/cond.md" \
        "$ROOT/docs/event-sourcing/groups.md"
fi
for p in "$@"; do
    case $p in
    http-api | */http-api.md) check_http_api; continue ;;
    /*) ;;
    *) p=$(pwd)/$p ;;
    esac
    check_page "$p"
done

if [ $FAILED -ne 0 ]; then
    echo "check-docs: the pages and the program differ (above)" >&2
    exit 1
fi
echo "check-docs: ok"
