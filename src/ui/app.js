// xs viewer: a live tail of the store, read through the same HTTP routes
// as the CLI. It only ever sends GETs.
//
// How it works: one EventSource on `GET /?follow` (history, then live)
// fills `frameList`, an array; incoming frames wait in `pending` and are
// added once per animation frame (or per 250 ms when the tab is hidden), so
// 1,000 frames/s cost one DOM update per frame painted, not one per frame.
// The list is virtual: a spacer as tall as all rows, and only the rows in
// view (a few dozen, never more than MAX_ROWS) are in the DOM. The state a
// reader can share (topic filter, since, selected frame) lives in the URL
// hash: #topic=user.*&since=10m&frame=<id>.
"use strict";

const ROW = 22; // px, as .row's height in app.css
const MAX_ROWS = 300; // DOM rows at most
const OVERSCAN = 10;
const KEEP = 200000; // frames kept in memory; the oldest go first
const PAYLOAD_LIMIT = 4 << 20; // bytes read to show a payload
const HEX_LIMIT = 4096;

const $ = (id) => document.getElementById(id);
const list = $("list"), spacer = $("spacer"), rows = $("rows");

let frameList = [];
let pending = [];
let source = null;
let lastId = null; // the newest id seen, to resume after a dropped stream
let stick = true; // follow the bottom unless the user scrolled up
let selected = null; // id of the frame shown in the detail panel
let scheduled = false;
let received = 0, rate = 0;
const state = readHash();

// ---------------------------------------------------------------- ids

const B36 = "0123456789abcdefghijklmnopqrstuvwxyz";

/// The ms timestamp of a SCRU128 id (its top 48 of 128 bits).
function idTime(id) {
  let n = 0n;
  for (const c of id.toLowerCase()) n = n * 36n + BigInt(B36.indexOf(c));
  return Number(n >> 80n);
}

/// The smallest SCRU128 id of a millisecond: 25 base-36 digits.
function idAt(ms) {
  return (BigInt(ms) << 80n).toString(36).padStart(25, "0");
}

/// `since` as a query pair: an id reads after it, a time from it.
function sinceParam(text) {
  text = text.trim();
  if (!text) return "";
  if (/^[0-9a-z]{25}$/i.test(text)) return "&after=" + text;
  const back = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  let ms;
  if (back) {
    const unit = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[back[2]];
    ms = Date.now() - Number(back[1]) * unit;
  } else {
    ms = Date.parse(text);
  }
  if (!Number.isFinite(ms) || ms < 0) {
    throw new Error(`since '${text}': expected a duration (10m, 2h), a date (2025-03-01T12:00:00Z) or an id`);
  }
  return "&from=" + idAt(ms);
}

function clock(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// ---------------------------------------------------------------- URL hash

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return {
    topic: params.get("topic") || "",
    since: params.get("since") || "",
    frame: params.get("frame") || "",
  };
}

function writeHash() {
  const params = new URLSearchParams();
  if (state.topic) params.set("topic", state.topic);
  if (state.since) params.set("since", state.since);
  if (selected) params.set("frame", selected);
  const text = params.toString().replace(/%2C/g, ",").replace(/%2A/g, "*");
  history.replaceState(null, "", text ? "#" + text : location.pathname);
}

// ---------------------------------------------------------------- the stream

function status(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
}

function connect(resume) {
  if (source) source.close();
  let query = "/?follow";
  if (state.topic) query += "&topic=" + encodeURIComponent(state.topic);
  try {
    query += resume && lastId ? "&after=" + lastId : sinceParam(state.since);
  } catch (e) {
    status(e.message, "error");
    return;
  }
  if (!resume) {
    frameList = [];
    pending = [];
    lastId = null;
    stick = true;
    schedule();
  }
  const es = new EventSource(query);
  source = es;
  es.onopen = () => status("live", "live");
  es.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    lastId = frame.id;
    pending.push(frame);
    received++;
    schedule();
  };
  es.onerror = () => {
    // The browser's own retry would read the history again: resume after
    // the last frame instead.
    es.close();
    if (source !== es) return;
    status("disconnected: retrying…", "error");
    setTimeout(() => source === es && connect(true), 1000);
  };
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  // rAF does not run in a hidden tab: a timer still drains `pending`.
  const timer = setTimeout(flush, 250);
  requestAnimationFrame(() => {
    clearTimeout(timer);
    flush();
  });
}

function flush() {
  if (!scheduled) return;
  scheduled = false;
  if (pending.length) {
    for (const frame of pending) frameList.push(frame);
    pending = [];
    if (frameList.length > KEEP) {
      const drop = frameList.length - KEEP + (KEEP >> 4);
      frameList.splice(0, drop);
      if (!stick) list.scrollTop = Math.max(0, list.scrollTop - drop * ROW);
    }
  }
  spacer.style.height = frameList.length * ROW + "px";
  if (stick) list.scrollTop = list.scrollHeight;
  render();
  $("count").textContent = `${frameList.length.toLocaleString()} frames · ${rate}/s`;
  $("latest").hidden = stick;
}

/// Draws the rows in view, and only those.
function render() {
  const first = Math.max(0, Math.floor(list.scrollTop / ROW) - OVERSCAN);
  const want = Math.ceil(list.clientHeight / ROW) + 2 * OVERSCAN;
  const end = Math.min(frameList.length, first + Math.min(want, MAX_ROWS));
  rows.style.transform = `translateY(${first * ROW}px)`;
  while (rows.childElementCount < end - first) rows.appendChild(makeRow());
  while (rows.childElementCount > end - first) rows.lastElementChild.remove();
  for (let i = first; i < end; i++) fillRow(rows.children[i - first], frameList[i], i);
}

function makeRow() {
  const row = document.createElement("div");
  row.className = "row";
  for (const name of ["t", "topic", "id", "meta"]) {
    const span = document.createElement("span");
    span.className = name;
    row.appendChild(span);
  }
  return row;
}

function fillRow(row, frame, index) {
  if (row.dataset.id === frame.id) {
    row.classList.toggle("selected", frame.id === selected);
    return;
  }
  if (frame.t === undefined) frame.t = idTime(frame.id);
  row.dataset.id = frame.id;
  row.dataset.index = index;
  const [t, topic, id, meta] = row.children;
  t.textContent = clock(frame.t);
  topic.textContent = frame.topic;
  id.textContent = frame.id.slice(-6);
  meta.textContent = frame.meta == null ? "" : JSON.stringify(frame.meta);
  row.classList.toggle("selected", frame.id === selected);
}

list.addEventListener("scroll", () => {
  stick = list.scrollTop + list.clientHeight >= list.scrollHeight - ROW;
  $("latest").hidden = stick;
  render();
});

$("latest").addEventListener("click", () => {
  stick = true;
  list.scrollTop = list.scrollHeight;
});

rows.addEventListener("click", (event) => {
  const row = event.target.closest(".row");
  if (!row) return;
  const frame = frameList.find((f) => f.id === row.dataset.id);
  if (frame) show(frame);
});

$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  state.topic = $("topic").value.trim();
  state.since = $("since").value.trim();
  writeHash();
  connect(false);
});

setInterval(() => {
  rate = received;
  received = 0;
  if (!scheduled) $("count").textContent = `${frameList.length.toLocaleString()} frames · ${rate}/s`;
}, 1000);

// ---------------------------------------------------------------- a frame

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

let shown = 0; // the latest show(): an older payload arriving late is dropped
let imageUrl = null;

async function show(frame) {
  const token = ++shown;
  selected = frame.id;
  writeHash();
  render();
  const body = $("detail-body");
  body.className = "";
  body.replaceChildren(el("div", `${new Date(idTime(frame.id)).toISOString()}  ${frame.topic}`));
  const copy = { ...frame };
  delete copy.t;
  body.appendChild(el("pre", JSON.stringify(copy, null, 2), "frame-json"));
  const payload = el("div");
  payload.id = "payload";
  body.appendChild(payload);
  if (!frame.hash) {
    payload.appendChild(el("div", "no payload", "muted"));
    return;
  }
  const href = "/cas/" + frame.hash;
  const link = el("a", "download payload");
  link.href = href;
  link.download = frame.id;
  payload.appendChild(link);
  let bytes, complete;
  try {
    [bytes, complete] = await fetchPrefix(href, PAYLOAD_LIMIT);
  } catch (e) {
    if (token === shown) payload.appendChild(el("div", `payload: ${e.message}`, "error"));
    return;
  }
  if (token !== shown) return;
  payload.appendChild(renderPayload(bytes, complete));
}

/// Up to `limit` bytes of a response; whether that was all of it.
async function fetchPrefix(href, limit) {
  const response = await fetch(href);
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  const reader = response.body.getReader();
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.length;
    if (size > limit) {
      reader.cancel();
      break;
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return size > limit ? [bytes.subarray(0, limit), false] : [bytes, true];
}

const IMAGES = [
  ["image/png", [0x89, 0x50, 0x4e, 0x47]],
  ["image/jpeg", [0xff, 0xd8, 0xff]],
  ["image/gif", [0x47, 0x49, 0x46, 0x38]],
  ["image/webp", [0x52, 0x49, 0x46, 0x46], 8, [0x57, 0x45, 0x42, 0x50]],
  ["image/bmp", [0x42, 0x4d]],
];

function startsWith(bytes, magic, at = 0) {
  return magic.every((b, i) => bytes[at + i] === b);
}

function sniffImage(bytes) {
  for (const [type, magic, at, more] of IMAGES) {
    if (startsWith(bytes, magic) && (!more || startsWith(bytes, more, at))) return type;
  }
  return null;
}

function asText(bytes) {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    // Control characters other than whitespace mean binary.
    return /[\x00-\x08\x0e-\x1f\x7f]/.test(text) ? null : text;
  } catch {
    return null;
  }
}

function renderPayload(bytes, complete) {
  const out = el("div");
  const size = complete ? `${bytes.length} bytes` : `more than ${bytes.length} bytes`;
  const image = complete && sniffImage(bytes);
  if (image) {
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageUrl = URL.createObjectURL(new Blob([bytes], { type: image }));
    out.appendChild(el("div", `${image}, ${size}`, "muted"));
    const img = el("img");
    img.src = imageUrl;
    img.alt = "payload";
    out.appendChild(img);
    return out;
  }
  const text = asText(bytes);
  if (text !== null) {
    let shownText = text, kind = "text";
    if (complete) {
      try {
        shownText = JSON.stringify(JSON.parse(text), null, 2);
        kind = "JSON";
      } catch {
        // plain text
      }
    }
    out.appendChild(el("div", `${kind}, ${size}`, "muted"));
    out.appendChild(el("pre", shownText, "payload-text"));
    return out;
  }
  out.appendChild(el("div", `binary, ${size}; the first ${Math.min(bytes.length, HEX_LIMIT)} bytes:`, "muted"));
  out.appendChild(el("pre", hexdump(bytes.subarray(0, HEX_LIMIT)), "payload-hex"));
  return out;
}

function hexdump(bytes) {
  const lines = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const chunk = bytes.subarray(at, at + 16);
    const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(chunk, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${at.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n");
}

/// A frame named in the URL hash opens once fetched (`GET /<id>`).
async function showFromHash(id) {
  if (!/^[0-9a-z]{25}$/i.test(id)) return;
  try {
    const response = await fetch("/" + id);
    if (response.ok) show(await response.json());
  } catch {
    // the frame is gone or the server is: nothing to show
  }
}

// ---------------------------------------------------------------- /ps and /kv

async function ndjson(href) {
  const response = await fetch(href);
  if (!response.ok) throw new Error(`${href}: ${response.status}`);
  const text = await response.text();
  return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

function cell(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function table(records, columns, onRow) {
  const t = el("table");
  const head = el("tr");
  for (const c of columns) head.appendChild(el("th", c));
  t.appendChild(head);
  for (const record of records) {
    const tr = el("tr");
    for (const c of columns) {
      const text = cell(record[c]);
      const td = el("td", text.length > 200 ? text.slice(0, 200) + "…" : text);
      td.title = text.slice(0, 2000);
      tr.appendChild(td);
    }
    if (onRow) tr.addEventListener("click", () => onRow(record));
    t.appendChild(tr);
  }
  return t;
}

async function refreshPs() {
  const box = $("ps");
  try {
    const records = await ndjson("/ps");
    if (!records.length) {
      box.className = "muted";
      box.textContent = "none";
      return;
    }
    const columns = [];
    for (const r of records) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
    box.className = "";
    box.replaceChildren(table(records, columns));
  } catch (e) {
    box.className = "error";
    box.textContent = e.message;
  }
}

async function refreshKv() {
  const box = $("kv");
  try {
    const records = await ndjson("/kv");
    if (!records.length) {
      box.className = "muted";
      box.textContent = "none";
      return;
    }
    box.className = "";
    box.replaceChildren(table(records, ["key", "value"], (r) => watchKey(r.key)));
  } catch (e) {
    box.className = "error";
    box.textContent = e.message;
  }
}

let watching = null; // the AbortController of the live key watch

/// `GET /kv/<key>?follow`: the value now, then each change, live.
async function watchKey(key) {
  if (watching) watching.abort();
  const control = new AbortController();
  watching = control;
  const box = $("kv-watch");
  const title = el("div", `${key} (live)`);
  const value = el("pre", "…");
  box.replaceChildren(title, value);
  try {
    const response = await fetch("/kv/" + encodeURIComponent(key) + "?follow", { signal: control.signal });
    if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { done, value: chunk } = await reader.read();
      if (done) break;
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const entry = JSON.parse(line);
        value.textContent = entry.deleted ? "(deleted)" : JSON.stringify(entry.value, null, 2);
        refreshKv(); // the table too, not 2 s later
      }
    }
    title.textContent = `${key} (watch ended)`;
  } catch (e) {
    if (control.signal.aborted) return;
    title.textContent = `${key}: ${e.message}`;
  }
}

// ---------------------------------------------------------------- start

$("topic").value = state.topic;
$("since").value = state.since;
connect(false);
if (state.frame) showFromHash(state.frame);
refreshPs();
refreshKv();
setInterval(() => {
  refreshPs();
  refreshKv();
}, 2000);
window.addEventListener("hashchange", () => {
  const next = readHash();
  const restream = next.topic !== state.topic || next.since !== state.since;
  Object.assign(state, next);
  $("topic").value = state.topic;
  $("since").value = state.since;
  if (restream) connect(false);
  if (next.frame && next.frame !== selected) showFromHash(next.frame);
});
