// dlflow's web page: aria2 JSON-RPC over the WebSocket at /jsonrpc of the
// page's own origin. Every string that comes from the server (file names,
// URLs, error messages) reaches the DOM through textContent or a dataset
// value, never parsed as HTML: they are the data of whoever added the
// download, or of the origin that named the file.
'use strict';
(function () {
  const KEY = 'dlflow.secret'; // sessionStorage, only when "remember" is ticked
  const CALL_TIMEOUT_MS = 30000;
  const POLL_MS = 1000;
  const LIST_MAX = 1000;
  const $ = (id) => document.getElementById(id);

  const state = {
    secret: '',
    sock: null,
    nextId: 1,
    pending: new Map(), // id -> {resolve, reject, timer}
    tasks: new Map(), // gid -> the latest fields known of the task
    rows: new Map(), // gid -> the DOM of its row
    mode: 'none', // 'push' (dlflow.subscribe) or 'poll' (plain aria2)
    pollTimer: 0,
    retryMs: 1000,
    gen: 0, // one per connection: a poll loop of an older one stops
    stopped: false, // no reconnect: the secret was refused
  };

  // ---- the secret: from #secret=S, or sessionStorage, or the form ----

  function secretFromHash() {
    const parts = location.hash.replace(/^#/, '').split('&');
    let secret = null;
    const rest = [];
    for (const p of parts) {
      if (p.startsWith('secret=')) {
        try { secret = decodeURIComponent(p.slice(7)); } catch (e) { secret = p.slice(7); }
      } else if (p) {
        rest.push(p);
      }
    }
    if (secret !== null) {
      // Out of the address bar and the history: not shown, not bookmarked.
      history.replaceState(null, '', location.pathname + location.search + (rest.length ? '#' + rest.join('&') : ''));
    }
    return secret;
  }

  function stored() {
    try { return sessionStorage.getItem(KEY); } catch (e) { return null; }
  }

  function showLogin(why) {
    $('app').hidden = true;
    $('login').hidden = false;
    setConn('disconnected', why || 'secret needed');
    $('secret').focus();
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.secret = $('secret').value;
    $('secret').value = '';
    try {
      if ($('remember').checked) sessionStorage.setItem(KEY, state.secret);
      else sessionStorage.removeItem(KEY);
    } catch (e) { /* storage refused: the secret lives in memory only */ }
    $('login').hidden = true;
    state.stopped = false;
    connect();
  });

  // ---- JSON-RPC over the WebSocket ----

  function setConn(s, text) {
    const c = $('conn');
    c.dataset.state = s;
    c.textContent = text || s;
  }

  function connect() {
    setConn('connecting');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(proto + '//' + location.host + '/jsonrpc');
    state.sock = ws;
    state.gen++;
    ws.onopen = () => {
      state.retryMs = 1000;
      setConn('connected');
      $('app').hidden = false;
      bootstrap();
    };
    ws.onmessage = (ev) => onMessage(ev.data);
    ws.onclose = () => {
      if (state.sock !== ws) return;
      state.sock = null;
      state.mode = 'none';
      clearTimeout(state.pollTimer);
      for (const [id, p] of state.pending) {
        clearTimeout(p.timer);
        p.reject(new Error('connection closed'));
        state.pending.delete(id);
      }
      if (state.stopped) return;
      setConn('disconnected', 'disconnected, retrying');
      setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 10000);
    };
  }

  function call(method, params) {
    return new Promise((resolve, reject) => {
      const ws = state.sock;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      const id = 'w' + state.nextId++;
      const timer = setTimeout(() => {
        state.pending.delete(id);
        reject(new Error(method + ': no answer'));
      }, CALL_TIMEOUT_MS);
      state.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({
        jsonrpc: '2.0', id, method,
        params: ['token:' + state.secret].concat(params || []),
      }));
    });
  }

  function rpcError(e) {
    const err = new Error(String((e && e.message) || 'error'));
    err.code = e && e.code;
    return err;
  }

  const unauthorized = (e) => e && e.message === 'Unauthorized';

  // refused ends the session on a wrong secret and reports other errors.
  function refused(e, what) {
    if (unauthorized(e)) {
      state.stopped = true;
      try { sessionStorage.removeItem(KEY); } catch (x) { /* nothing stored */ }
      if (state.sock) state.sock.close();
      showLogin('Unauthorized: wrong secret');
      return;
    }
    say((what ? what + ': ' : '') + e.message, true);
  }

  function onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (e) { return; }
    for (const m of Array.isArray(msg) ? msg : [msg]) handle(m);
  }

  function handle(m) {
    if (!m || typeof m !== 'object') return;
    if (m.id !== undefined && m.id !== null) {
      const p = state.pending.get(String(m.id));
      if (!p) return;
      state.pending.delete(String(m.id));
      clearTimeout(p.timer);
      if (m.error) p.reject(rpcError(m.error));
      else p.resolve(m.result);
      return;
    }
    const arg = Array.isArray(m.params) ? m.params[0] : null;
    if (m.method === 'dlflow.onProgress') {
      onProgress(arg);
    } else if (typeof m.method === 'string' && m.method.startsWith('aria2.onDownload') && arg && typeof arg.gid === 'string') {
      refresh(arg.gid);
    }
  }

  // ---- keeping the tasks ----

  async function bootstrap() {
    try {
      const [active, waiting, stopped] = await Promise.all([
        call('aria2.tellActive'),
        call('aria2.tellWaiting', [0, LIST_MAX]),
        call('aria2.tellStopped', [0, LIST_MAX]),
      ]);
      for (const t of [].concat(active, waiting, stopped)) upsert(t);
    } catch (e) {
      refused(e, 'listing the downloads');
      return;
    }
    try {
      await call('dlflow.subscribe', [{ interval_ms: 500 }]);
      state.mode = 'push';
      setConn('connected', 'connected (push)');
    } catch (e) {
      if (unauthorized(e)) { refused(e); return; }
      // Not dlflow (plain aria2c): poll as every aria2 client does.
      state.mode = 'poll';
      setConn('connected', 'connected (polling)');
      poll(state.gen);
    }
  }

  async function poll(gen) {
    if (state.mode !== 'poll' || gen !== state.gen) return;
    try {
      const [active, stat] = await Promise.all([call('aria2.tellActive'), call('aria2.getGlobalStat')]);
      const seen = new Set();
      for (const t of active) { seen.add(t.gid); upsert(t); }
      // A task active at the last poll and absent now finished, paused or
      // failed in between; ask for it rather than trust a notification.
      const gone = [];
      for (const t of state.tasks.values()) {
        if (t.status === 'active' && !seen.has(t.gid) && gone.length < 50) gone.push(t.gid);
      }
      await Promise.all(gone.map(refresh));
      showGlobal(stat);
    } catch (e) {
      if (unauthorized(e)) { refused(e); return; }
    }
    if (state.mode === 'poll' && gen === state.gen) state.pollTimer = setTimeout(poll, POLL_MS, gen);
  }

  function onProgress(p) {
    if (!p || typeof p !== 'object') return;
    if (Array.isArray(p.tasks)) for (const t of p.tasks) upsert(t);
    if (p.global) showGlobal(p.global);
  }

  async function refresh(gid) {
    try {
      upsert(await call('aria2.tellStatus', [gid]));
    } catch (e) {
      if (unauthorized(e)) { refused(e); return; }
      if (/not found/i.test(e.message)) drop(gid);
    }
  }

  function upsert(t) {
    if (!t || typeof t.gid !== 'string') return;
    // A push may carry fewer fields than tellStatus: keep the others.
    const merged = Object.assign({}, state.tasks.get(t.gid), t);
    state.tasks.set(t.gid, merged);
    render(merged);
  }

  function drop(gid) {
    state.tasks.delete(gid);
    const r = state.rows.get(gid);
    if (r) r.li.remove();
    state.rows.delete(gid);
    $('empty').hidden = state.tasks.size > 0;
  }

  // ---- actions ----

  async function act(gid, what) {
    const t = state.tasks.get(gid);
    const live = t && ['active', 'waiting', 'paused'].includes(t.status);
    try {
      if (what === 'pause') await call('aria2.pause', [gid]);
      else if (what === 'resume') await call('aria2.unpause', [gid]);
      else if (live) await call('aria2.remove', [gid]);
      else { await call('aria2.removeDownloadResult', [gid]); drop(gid); return; }
    } catch (e) {
      refused(e, what);
    }
    refresh(gid);
  }

  $('add').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const lines = $('uris').value.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
    const failed = [];
    let added = 0;
    for (const line of lines) {
      try {
        refresh(await call('aria2.addUri', [line.split(/\s+/)]));
        added++;
      } catch (e) {
        if (unauthorized(e)) { refused(e); return; }
        failed.push(line + ': ' + e.message);
      }
    }
    if (!failed.length) $('uris').value = '';
    say(failed.length ? failed.join('\n') : 'Added ' + added + (added === 1 ? ' download.' : ' downloads.'), failed.length > 0);
  });

  $('metalink').addEventListener('change', async (ev) => {
    const input = ev.target;
    const f = input.files && input.files[0];
    if (!f) return;
    try {
      const gids = await call('aria2.addMetalink', [base64(new Uint8Array(await f.arrayBuffer()))]);
      for (const gid of gids) refresh(gid);
      say('Added ' + gids.length + ' from ' + f.name + '.', false);
    } catch (e) {
      refused(e, f.name);
    }
    input.value = '';
  });

  function base64(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }

  function say(text, isError) {
    const m = $('message');
    m.textContent = text;
    m.dataset.error = isError ? 'yes' : 'no';
  }

  // ---- rendering: text only ----

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function button(label, gid, what) {
    const b = el('button', what, label);
    b.type = 'button';
    b.addEventListener('click', () => act(gid, what));
    return b;
  }

  function makeRow(gid) {
    const r = {
      li: el('li', 'task'),
      name: el('span', 'name'),
      status: el('span', 'status'),
      bar: el('progress'),
      size: el('span', 'size'),
      speed: el('span', 'speed'),
      conns: el('span', 'conns'),
      pause: button('Pause', gid, 'pause'),
      resume: button('Resume', gid, 'resume'),
      remove: button('Remove', gid, 'remove'),
      details: el('details', 'lanes'),
      summary: el('summary'),
      lanes: el('tbody'),
      sources: el('ul', 'sources'),
    };
    r.li.dataset.gid = gid;
    const head = el('div', 'head');
    head.append(r.name, r.status, r.bar, r.size, r.speed, r.conns, r.pause, r.resume, r.remove);
    const table = el('table');
    const hr = el('tr');
    for (const h of ['#', 'range', 'progress', 'done', 'speed', 'source']) hr.append(el('th', '', h));
    const thead = el('thead');
    thead.append(hr);
    table.append(thead, r.lanes);
    r.details.append(r.summary, table, r.sources);
    r.li.append(head, r.details);
    $('tasks').append(r.li);
    state.rows.set(gid, r);
    return r;
  }

  function render(t) {
    const r = state.rows.get(t.gid) || makeRow(t.gid);
    $('empty').hidden = true;
    r.li.dataset.status = String(t.status);
    r.name.textContent = taskName(t);
    r.name.title = t.gid;
    r.status.textContent = String(t.status) + (t.errorMessage ? ': ' + t.errorMessage : '');
    const total = num(t.totalLength);
    const done = num(t.completedLength);
    setBar(r.bar, done, total, t.status === 'complete');
    r.size.textContent = bytes(done) + ' / ' + (total > 0 ? bytes(total) + ' (' + Math.floor((done * 100) / total) + '%)' : '?');
    r.speed.textContent = bytes(num(t.downloadSpeed)) + '/s';
    r.conns.textContent = String(num(t.connections));
    r.pause.hidden = !(t.status === 'active' || t.status === 'waiting');
    r.resume.hidden = t.status !== 'paused';
    r.remove.textContent = ['active', 'waiting', 'paused'].includes(t.status) ? 'Remove' : 'Clear';
    renderLanes(r, t);
  }

  // renderLanes shows the connections of a ranged download: each lane's
  // range, how much of it is done, its rate and its source.
  function renderLanes(r, t) {
    const lanes = Array.isArray(t.lanes) ? t.lanes : [];
    const sources = Array.isArray(t.sources) ? t.sources : [];
    r.details.hidden = lanes.length === 0 && sources.length === 0;
    if (r.details.hidden) return;
    r.summary.textContent = lanes.length + (lanes.length === 1 ? ' connection' : ' connections') +
      ', ' + sources.length + (sources.length === 1 ? ' source' : ' sources');
    const rows = lanes.map((l) => {
      const start = num(l.start);
      const end = num(l.end);
      // end is inclusive, as in Range; -1 is a range the daemon does not
      // know (it may count a connection's bytes only): no bar then.
      const known = start >= 0 && end >= start;
      const tr = el('tr', 'lane');
      tr.dataset.index = String(l.index);
      const bar = el('progress');
      bar.hidden = !known;
      if (known) setBar(bar, num(l.completedLength), end - start + 1, false);
      const cell = el('td');
      cell.append(bar);
      tr.append(el('td', '', String(l.index)), el('td', '', known ? start + '–' + end : '?'), cell,
        el('td', '', bytes(num(l.completedLength))), el('td', '', bytes(num(l.downloadSpeed)) + '/s'),
        el('td', 'source', String(l.source || '')));
      return tr;
    });
    r.lanes.replaceChildren(...rows);
    r.sources.replaceChildren(...sources.map((s) => el('li', 'source',
      String(s.uri) + ' — ' + bytes(num(s.completedLength)) + ', ' + bytes(num(s.downloadSpeed)) + '/s, ' +
      num(s.connections) + ' conn.')));
  }

  function setBar(bar, done, total, complete) {
    if (total > 0) {
      bar.max = total;
      bar.value = Math.min(done, total);
    } else if (complete) {
      bar.max = 1;
      bar.value = 1;
    } else {
      bar.removeAttribute('value'); // indeterminate: size unknown
    }
  }

  function taskName(t) {
    const f = Array.isArray(t.files) && t.files[0];
    if (f && f.path) return String(f.path).split(/[\\/]/).pop();
    const u = f && Array.isArray(f.uris) && f.uris[0] && f.uris[0].uri;
    if (u) return String(u);
    return t.gid;
  }

  function showGlobal(g) {
    if (!g) return;
    $('global').textContent = bytes(num(g.downloadSpeed)) + '/s · active ' + num(g.numActive) +
      ' · waiting ' + num(g.numWaiting) + ' · stopped ' + num(g.numStopped);
  }

  function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + ' ' + units[i];
  }

  // ---- start ----

  // A new #secret=S in the same tab replaces the secret and reconnects.
  window.addEventListener('hashchange', () => {
    const s = secretFromHash();
    if (s === null) return;
    state.secret = s;
    state.stopped = false;
    $('login').hidden = true;
    if (state.sock) state.sock.close(); // onclose reconnects
    else connect();
  });

  const s = secretFromHash();
  if (s !== null) {
    state.secret = s;
    connect();
  } else if (stored() !== null) {
    state.secret = stored();
    connect();
  } else {
    showLogin();
  }
})();
