// The fixed sequence of calls of the conformance script (see script.js).
// Tasks have labels: slow (a throttled download that stays active until
// removed), small1 (added paused, with a checksum and a header), small2
// (added at position 0), missing (a 404), forced (force-removed), meta (from
// a Metalink). max-concurrent-downloads is 1, so while slow is active the
// others wait: each state asked for is one the queue must be in, not a race.
"use strict";

const STATUS_KEYS = ["gid", "status", "totalLength", "completedLength"];

async function steps(run, env) {
  const o = env.origin;
  const g = {};

  await run.call("getVersion", "getVersion");
  const gopt = await run.call("getGlobalOption", "getGlobalOption");
  const dir = String((gopt && gopt.dir) || ".").replace(/\/+$/, "") + "/sub";
  await run.call("changeGlobalOption", "changeGlobalOption", {
    "max-concurrent-downloads": "1",
    "max-overall-download-limit": "0",
  });
  const gopt2 = await run.call("getGlobalOption after change", "getGlobalOption");
  run.check("changeGlobalOption took effect", !!gopt2 && gopt2["max-concurrent-downloads"] === "1");

  g.slow = await run.add("addUri", "slow", [o + "/slow.bin"], {
    dir,
    out: "slow.bin",
    split: "2",
    "max-connection-per-server": "2",
    "max-download-limit": "1M",
  });
  run.check("gid is 16 lowercase hex digits", /^[0-9a-f]{16}$/.test(String(g.slow)));
  await run.waitStatus("slow", g.slow, ["active"]);
  await run.waitBytes(g.slow);

  const sum1 = await env.sha256Of(o + "/small1.bin");
  g.small1 = await run.add("addUri paused with options", "small1", [o + "/small1.bin"], {
    dir,
    out: "small1.bin",
    header: ["X-Conformance: 1"],
    checksum: "sha-256=" + sum1,
    pause: "true",
  });
  await run.waitStatus("small1", g.small1, ["paused"]);
  g.small2 = await run.add("addUri at position 0", "small2", [o + "/small2.bin"], { dir, out: "small2.bin" }, 0);
  await run.waitStatus("small2", g.small2, ["waiting"]);

  await queries(run, g);
  await transitions(run, g, dir, o);
  await others(run, g, dir, env);
  await results(run, g);
}

// queries asks everything about the queue while slow is active, small1
// paused and small2 waiting.
async function queries(run, g) {
  const act = await run.call("tellStatus active", "tellStatus", g.slow);
  // A client's progress bar: an active task that receives bytes says so.
  run.check("active: connections > 0", !!act && Number(act.connections) > 0);
  run.check("active: downloadSpeed > 0", !!act && Number(act.downloadSpeed) > 0);
  await run.call("tellStatus with keys", "tellStatus", g.slow, STATUS_KEYS);
  await run.call("tellStatus paused", "tellStatus", g.small1);
  await run.call("tellStatus waiting", "tellStatus", g.small2);
  run.order("tellActive", await run.call("tellActive", "tellActive"));
  run.order("tellActive with keys", await run.call("tellActive with keys", "tellActive", ["gid", "status"]));
  run.order("tellWaiting", await run.call("tellWaiting", "tellWaiting", 0, 10));
  run.order("tellWaiting with keys", await run.call("tellWaiting with keys", "tellWaiting", 0, 10, ["gid", "status"]));

  const uris = await run.call("getUris", "getUris", g.slow);
  run.check("getUris names the uri", Array.isArray(uris) && uris.length > 0 && uris.every((u) => /\/slow\.bin$/.test(u.uri)));
  const files = await run.call("getFiles", "getFiles", g.slow);
  run.check("getFiles path ends with out", Array.isArray(files) && /\/sub\/slow\.bin$/.test(files[0] && files[0].path));
  await run.call("getServers", "getServers", g.slow);
  const opt = await run.call("getOption", "getOption", g.slow);
  run.check("getOption has out and split", !!opt && opt.out === "slow.bin" && opt.split === "2");
  await run.call("changeOption", "changeOption", g.slow, { "max-download-limit": "2M" });
  const opt2 = await run.call("getOption after change", "getOption", g.slow);
  run.check("changeOption took effect", !!opt2 && /^(2M|2097152)$/.test(opt2["max-download-limit"]));
  await run.call("getGlobalStat", "getGlobalStat");

  await run.call("changePosition POS_SET", "changePosition", g.small1, 0, "POS_SET");
  run.order("tellWaiting after POS_SET", await run.call("tellWaiting after POS_SET", "tellWaiting", 0, 10, ["gid"]));
  await run.call("changePosition POS_END", "changePosition", g.small1, 0, "POS_END");
  run.order("tellWaiting after POS_END", await run.call("tellWaiting after POS_END", "tellWaiting", 0, 10, ["gid"]));
}

// transitions drives the tasks through pause, unpause, completion, removal
// and error.
async function transitions(run, g, dir, o) {
  await run.call("pause active", "pause", g.slow);
  await run.waitStatus("slow", g.slow, ["paused"]);
  // small1 is paused, so small2 is next.
  await run.waitStatus("small2", g.small2, ["complete", "error"]);
  await run.call("unpause", "unpause", g.small1);
  await run.waitStatus("small1", g.small1, ["complete", "error"]);
  const seen = await (await fetch(o + "/seen-header")).text();
  run.check("addUri's header reached the origin", seen === "1");
  const st = await run.call("tellStatus complete", "tellStatus", g.small1);
  run.check("complete: completedLength = totalLength", !!st && st.totalLength !== "0" && st.completedLength === st.totalLength);
  await run.call("getFiles complete", "getFiles", g.small1);
  await run.call("getUris complete", "getUris", g.small1);
  run.order("tellStopped", await run.call("tellStopped", "tellStopped", 0, 10));
  run.order("tellStopped with keys", await run.call("tellStopped with keys", "tellStopped", 0, 10, ["gid", "status"]));

  await run.call("unpause paused", "unpause", g.slow);
  await run.waitStatus("slow", g.slow, ["active"]);
  await run.call("pauseAll", "pauseAll");
  await run.waitStatus("slow", g.slow, ["paused"]);
  await run.call("unpauseAll", "unpauseAll");
  await run.waitStatus("slow", g.slow, ["active"]);
  await run.call("remove active", "remove", g.slow);
  await run.waitStatus("slow", g.slow, ["removed"]);
  await run.call("tellStatus removed", "tellStatus", g.slow);

  g.missing = await run.add("addUri 404", "missing", [o + "/missing.bin"], { dir, out: "missing.bin" });
  await run.waitStatus("missing", g.missing, ["error"]);
  await run.call("tellStatus error", "tellStatus", g.missing);

  g.badsum = await run.add("addUri wrong checksum", "badsum", [o + "/small3.bin"], {
    dir,
    out: "badsum.bin",
    checksum: "sha-256=" + "0".repeat(64),
  });
  await run.waitStatus("badsum", g.badsum, ["error", "complete"]);
  await run.call("tellStatus checksum error", "tellStatus", g.badsum, ["status", "errorCode", "errorMessage"]);

  g.forced = await run.add("addUri to force-remove", "forced", [o + "/slow.bin"], { dir, out: "forced.bin", pause: "true" });
  await run.waitStatus("forced", g.forced, ["paused"]);
  await run.call("forceRemove paused", "forceRemove", g.forced);
  await run.waitStatus("forced", g.forced, ["removed"]);
  await run.call("tellStatus force-removed", "tellStatus", g.forced);

  g.forced2 = await run.add("addUri to force-remove active", "forced2", [o + "/slow.bin"], { dir, out: "forced2.bin" });
  await run.waitStatus("forced2", g.forced2, ["active"]);
  // A pause right after a change of options (aria2 applies them on the
  // fly; a daemon that restarts the download must still take the pause).
  await run.record("changeOption and pause in one multicall", "system.multicall", false, () =>
    run.client.multicall([
      ["changeOption", g.forced2, { "max-download-limit": "3M" }],
      ["pause", g.forced2],
    ])
  );
  await run.waitStatus("forced2", g.forced2, ["paused"]);
  await run.call("unpause after multicall", "unpause", g.forced2);
  await run.waitStatus("forced2", g.forced2, ["active"]);
  await run.call("forceRemove active", "forceRemove", g.forced2);
  await run.waitStatus("forced2", g.forced2, ["removed"]);
  await run.call("tellStatus force-removed active", "tellStatus", g.forced2, STATUS_KEYS);
}

// others covers the methods that are not about one task's life.
async function others(run, g, dir, env) {
  const o = env.origin;
  const ml = await env.metalinkOf(o, "small3.bin");
  const gids = await run.call("addMetalink", "addMetalink", ml, { dir });
  if (Array.isArray(gids) && typeof gids[0] === "string") {
    run.labels.set(gids[0], "meta");
    await run.waitStatus("meta", gids[0], ["complete", "error"]);
    const files = await run.call("getFiles metalink", "getFiles", gids[0]);
    run.check("metalink file named as in the document", Array.isArray(files) && /\/sub\/small3\.bin$/.test(files[0] && files[0].path));
  }
  // Not a torrent; dlflow has no BitTorrent: either way an error.
  await run.call("addTorrent", "addTorrent", Buffer.from("not a torrent").toString("base64"));

  await run.call("getSessionInfo", "getSessionInfo");
  await run.call("saveSession", "saveSession");
  await run.record("system.multicall", "system.multicall", false, () =>
    run.client.multicall([
      ["getVersion"],
      ["tellStatus", g.small1, ["gid", "status"]],
      ["tellStatus", "0123456789abcdef"],
    ])
  );
  const methods = await run.call("system.listMethods", "system.listMethods");
  run.values("system.listMethods", methods);
  const notes = await run.call("system.listNotifications", "system.listNotifications");
  run.values("system.listNotifications", notes);
  await run.call("tellStatus unknown gid", "tellStatus", "0123456789abcdef");
  await run.call("pause unknown gid", "pause", "0123456789abcdef");

  // Over HTTP POST (a client that never opened the WebSocket posts).
  const http = new env.Aria2({ host: "127.0.0.1", port: run.client.port, secret: run.client.secret });
  await run.callWith(http, false, "getVersion over HTTP", "getVersion");
  const wrong = new env.Aria2({ host: "127.0.0.1", port: run.client.port, secret: "wrong-" + run.client.secret });
  await run.callWith(wrong, true, "wrong token over HTTP", "getVersion");
  await wrong.open();
  await run.callWith(wrong, true, "wrong token over WebSocket", "tellActive");
  await wrong.close();
}

// results removes stopped tasks' results, one then all.
async function results(run, g) {
  await run.call("removeDownloadResult", "removeDownloadResult", g.small2);
  run.order("tellStopped after removeDownloadResult", await run.call("tellStopped after removeDownloadResult", "tellStopped", 0, 10, ["gid"]));
  await run.call("removeDownloadResult again", "removeDownloadResult", g.small2);
  await run.call("purgeDownloadResult", "purgeDownloadResult");
  run.order("tellStopped after purge", await run.call("tellStopped after purge", "tellStopped", 0, 10, ["gid"]));
  await run.call("getGlobalStat at the end", "getGlobalStat");
}

module.exports = { steps, STATUS_KEYS };
