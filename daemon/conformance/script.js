#!/usr/bin/env node
// Conformance script of issue 21: one fixed sequence of aria2 JSON-RPC calls
// made through the npm package `aria2` (a client nobody here wrote) over
// WebSocket. It is run unchanged against `aria2c --enable-rpc` and against
// `dlflow daemon`; conformance_test.go compares the two outputs.
//
// Usage: node script.js --port P --secret S --origin http://127.0.0.1:Q
//
// The origin serves small1.bin, small2.bin, small3.bin (fast), slow.bin
// (throttled so that it stays active) and nothing at missing.bin (404).
//
// Output (stdout, one JSON document): per step the SHAPE of the answer (keys
// and JSON types, recursively; values replaced by their type except the
// values that carry meaning: status, errorCode, error codes, notification
// and method names), the order of tasks in list answers (as labels), the
// statuses each task was seen in (in order), and the notifications each task
// received (in order). Every wait is bounded in polls and in time.
"use strict";

const crypto = require("crypto");
const Aria2 = require("aria2");

const CALL_TIMEOUT_MS = 15000;
const POLL_MS = 100;
const POLL_COUNT = 200; // 20 s at most per wait
// All waits together take at most this long; after it each wait polls
// once, so that a daemon stuck in one state still gets its answers
// compared within conformance_test.go's 4 minutes.
const WAIT_BUDGET_MS = 150000;

function parseArgs(argv) {
  const out = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
      throw new Error("usage: script.js --port P --secret S --origin URL");
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ["port", "secret", "origin"]) {
    if (!out[k]) throw new Error("missing --" + k);
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Keys whose string values are kept: they carry meaning that a client
// branches on, not data. (Error codes are kept too: see shape.)
const KEPT = new Set(["status", "errorCode"]);

// shape replaces values by their JSON type. Arrays become [merged element
// shape] (or [] when empty), so that lists of different lengths compare.
function shape(v, key) {
  if (v === null) return "null";
  if (Array.isArray(v)) {
    if (v.length === 0) return [];
    return [v.map((e) => shape(e, key)).reduce(merge)];
  }
  if (typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = shape(v[k], k);
    return o;
  }
  if (typeof v === "string" && KEPT.has(key)) return "=" + v;
  // An error's code inside an answer (system.multicall's failed calls).
  if (typeof v === "number" && key === "code") return "=" + v;
  return typeof v;
}

// merge unions two shapes: objects by keys, scalars as "a|b" sorted.
function merge(a, b) {
  const ja = JSON.stringify(a);
  if (ja === JSON.stringify(b)) return a;
  if (isObj(a) && isObj(b)) {
    const o = {};
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      o[k] = k in a && k in b ? merge(a[k], b[k]) : k in a ? a[k] : b[k];
    }
    return o;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length === 0) return b;
    if (b.length === 0) return a;
    return [merge(a[0], b[0])];
  }
  if (typeof a === "string" && typeof b === "string") {
    return [...new Set([...a.split("|"), ...b.split("|")])].sort().join("|");
  }
  return "mixed";
}

// positional shapes a multicall's answer element by element (as an object
// "0", "1", ...): each element is a different call's answer.
function positional(list) {
  if (!Array.isArray(list)) return shape(list);
  const o = {};
  list.forEach((e, i) => (o[String(i)] = shape(e)));
  return o;
}

function isObj(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function withTimeout(p, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error("timeout: " + what)), CALL_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

class Run {
  constructor(args) {
    this.args = args;
    this.client = new Aria2({
      host: "127.0.0.1",
      port: Number(args.port),
      secret: args.secret,
      path: "/jsonrpc",
    });
    this.steps = [];
    this.labels = new Map(); // gid -> label
    this.statuses = {}; // label -> [status...]
    this.checks = {}; // name -> bool
    this.received = []; // [gid, notification name] in order
    this.budget = WAIT_BUDGET_MS; // what is left for waitStatus
  }

  // notifications returns the received notifications by task label.
  notifications() {
    const out = {};
    for (const [gid, name] of this.received) {
      const l = this.label(gid);
      (out[l] = out[l] || []).push(name);
    }
    return out;
  }

  label(gid) {
    return this.labels.get(gid) || "unknown";
  }

  // call runs one method, records its answer's shape under step and
  // returns the raw result (undefined after an error).
  async call(step, method, ...params) {
    return this.callWith(this.client, false, step, method, ...params);
  }

  // callWith is call through another client; keepMessage keeps an error's
  // message (for the errors whose text clients show, like Unauthorized).
  async callWith(client, keepMessage, step, method, ...params) {
    return this.record(step, method, keepMessage, () => client.call(method, ...params));
  }

  // record runs fn (a call through the client) and records its answer.
  async record(step, method, keepMessage, fn) {
    try {
      const res = await withTimeout(fn(), step);
      this.steps.push({ step, method, result: method === "system.multicall" ? positional(res) : shape(res) });
      return res;
    } catch (err) {
      // The text is not compared; it tells a reader what went wrong.
      process.stderr.write(`${step} (${method}): ${err.code || ""} ${err.message}\n`);
      const e = errShape(err);
      if (keepMessage && e.message) e.message = "=" + err.message;
      this.steps.push({ step, method, error: e });
      return undefined;
    }
  }

  // order records, for a list answer, the tasks' labels in order.
  order(step, list) {
    const s = this.steps.find((x) => x.step === step);
    if (s && Array.isArray(list)) s.order = list.map((t) => this.label(t.gid));
  }

  // check records a fact about values that shapes do not show.
  check(name, ok) {
    this.checks[name] = !!ok;
  }

  // values records, for a list of names (methods, notifications), the
  // names themselves, sorted.
  values(step, list) {
    const s = this.steps.find((x) => x.step === step);
    if (s && Array.isArray(list)) s.values = list.map(String).sort();
  }

  // waitBytes polls until the task has received some bytes (bounded), so
  // that its servers and sizes are known when asked.
  async waitBytes(gid) {
    for (let i = 0; i < POLL_COUNT; i++) {
      try {
        const r = await withTimeout(
          this.client.call("tellStatus", gid, ["completedLength"]),
          "tellStatus"
        );
        if (Number(r.completedLength) > 0) return;
      } catch (err) {
        return;
      }
      await sleep(POLL_MS);
    }
  }

  note(label, status) {
    const seq = (this.statuses[label] = this.statuses[label] || []);
    if (seq[seq.length - 1] !== status) seq.push(status);
  }

  // waitStatus polls tellStatus until the task's status is one of want
  // (bounded), and records the status it ends in.
  async waitStatus(label, gid, want) {
    let status = "none";
    const start = Date.now();
    for (let i = 0; i < POLL_COUNT; i++) {
      try {
        const r = await withTimeout(
          this.client.call("tellStatus", gid, ["status"]),
          "tellStatus"
        );
        status = r.status;
      } catch (err) {
        // aria2 forgets a task removed before it started: "not found" is
        // where such a task ends.
        status = typeof err.code === "number" ? "not-found" : "call-failed";
        break;
      }
      if (want.includes(status) || this.budget - (Date.now() - start) <= 0) break;
      await sleep(POLL_MS);
    }
    this.budget -= Date.now() - start;
    this.note(label, status);
    return status;
  }

  async add(step, label, uris, options, position) {
    const params = position === undefined ? [uris, options] : [uris, options, position];
    const gid = await this.call(step, "addUri", ...params);
    if (typeof gid === "string") this.labels.set(gid, label);
    return gid;
  }

  listen() {
    const names = [
      "onDownloadStart",
      "onDownloadPause",
      "onDownloadStop",
      "onDownloadComplete",
      "onDownloadError",
      "onBtDownloadComplete",
    ];
    for (const name of names) {
      // By gid: a notification may come before the answer that tells
      // the gid (labels are resolved at the end).
      this.client.on(name, (params) => {
        for (const p of params || []) this.received.push([p && p.gid, name]);
      });
    }
  }

  // settle waits until no notification arrived for a second (bounded).
  async settle() {
    let last = this.received.length;
    for (let i = 0; i < 20; i++) {
      await sleep(1000);
      const now = this.received.length;
      if (now === last) return;
      last = now;
    }
  }
}

function errShape(err) {
  if (typeof err.code === "number") {
    return { code: err.code, message: typeof err.message };
  }
  return { client: String(err.message || err) };
}


async function metalinkOf(origin, name) {
  const body = Buffer.from(await (await fetch(origin + "/" + name)).arrayBuffer());
  const sum = crypto.createHash("sha256").update(body).digest("hex");
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<metalink xmlns="urn:ietf:params:xml:ns:metalink">\n' +
    `  <file name="${name}">\n` +
    `    <size>${body.length}</size>\n` +
    `    <hash type="sha-256">${sum}</hash>\n` +
    `    <url>${origin}/${name}</url>\n` +
    "  </file>\n" +
    "</metalink>\n";
  return Buffer.from(xml).toString("base64");
}

async function sha256Of(url) {
  const body = Buffer.from(await (await fetch(url)).arrayBuffer());
  return crypto.createHash("sha256").update(body).digest("hex");
}

if (require.main === module) {
  main(parseArgs(process.argv)).then(
    (out) => {
      process.stdout.write(JSON.stringify(out, null, 2) + "\n");
      process.exit(0);
    },
    (err) => {
      process.stderr.write("conformance script: " + (err.stack || err) + "\n");
      process.exit(1);
    }
  );
}

async function main(args) {
  const run = new Run(args);
  run.listen();
  await withTimeout(run.client.open(), "open");
  await require("./steps").steps(run, {
    origin: args.origin.replace(/\/$/, ""),
    sha256Of,
    metalinkOf,
    Aria2,

  });
  await run.settle();
  await run.client.close();
  return {
    client: "aria2@" + require("aria2/package.json").version,
    steps: run.steps,
    checks: run.checks,
    statuses: run.statuses,
    notifications: run.notifications(),
  };
}
