// The pydds dashboard: what one node knows of its cluster, read from its JSON API.
//
// Everything comes from the API (docs/http.md), with the bearer token the user
// gives, kept in this tab's sessionStorage. Values from the node are written as
// text only (textContent), never as HTML. Every list the page keeps is bounded:
// the charts keep the last HISTORY samples, the event table the last EVENT_ROWS.
"use strict";

(() => {
  const POLL_MS = 1000; // statistics for the charts, and the view on screen
  const REQUEST_MS = 10000; // a request the node has not answered by then has failed
  const RETRY_MS = 2000; // the first wait before reaching for the node again
  const HISTORY = 300; // samples the charts keep: five minutes at one a second
  const EVENT_ROWS = 200; // rows the event table keeps
  const PAUSED_EVENTS = 1000; // events kept while paused (the oldest go first)
  const PAGE = 50; // keys a page of the key browser shows
  const LEFT_KEPT = 20; // departed members still listed, newest first
  const KINDS = ["created", "changed", "deleted", "expired", "custom", "joined", "left",
    "unreachable", "reachable", "stale", "warmed", "evicted", "memory_full"];
  const CHANGE_KINDS = ["created", "changed", "deleted", "expired"];
  const COLORS = ["#2f6fde", "#d9534f"];
  const TOKEN_KEY = "pydds.token";

  const $ = (id) => document.getElementById(id);
  const base = new URL("../", document.baseURI); // the node: the page is at <node>/ui/

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    grant: null, // what the token may do (GET /v1/token)
    view: null,
    samples: [], // {t, changes, events, bytesIn, bytesOut, memory, limit, evicted}
    members: new Map(), // name -> last member object seen, for "left"
    left: [], // {name, address, role, at}
    lastTraffic: new Map(), // peer linked now -> {t, bytes_in, bytes_out}
    browser: {
      db: null, prefix: "", cursors: [null], keys: [], selected: null, stream: null,
      editing: null, // the key the editor's text belongs to
      keysAsked: 0, detailAsked: 0, // the latest requests: older answers are dropped
    },
    live: { stream: null, paused: false, held: [], count: 0 },
    polling: false,
    timer: null,
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // -- the API ----------------------------------------------------------------------

  // A key or a database name as one path segment. "." and ".." cannot be one in a
  // browser: its URL parser resolves them as dot segments, escaped as %2E or not, so
  // such keys are read, written and deleted through the batch routes (dotted).
  const segment = (text) => encodeURIComponent(text);
  const dotted = (key) => key === "." || key === "..";
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

  function url(path, params) {
    const out = new URL(path, base);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") {
        out.searchParams.set(name, value);
      }
    }
    return out;
  }

  function headers(extra) {
    const out = { ...extra };
    if (state.token) out.Authorization = "Bearer " + state.token;
    return out;
  }

  async function api(path, { method = "GET", params, body } = {}) {
    const init = {
      method, headers: headers(), cache: "no-store", signal: AbortSignal.timeout(REQUEST_MS),
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = body;
    }
    const response = await fetch(url(path, params), init);
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (err) {
        data = null;
      }
    }
    if (response.status === 401 && path !== "v1/token") {
      signOut("The node refused the token.");
    }
    if (!response.ok) {
      const code = data && data.error ? data.error : "http_error";
      const message = data && data.message ? data.message : response.statusText;
      throw new ApiError(response.status, code, message);
    }
    return data;
  }

  const dbPath = (db) => "v1/databases/" + segment(db);
  const keyPath = (db, key) => dbPath(db) + "/keys/" + segment(key);

  // Server-Sent Events over fetch (EventSource sends no Authorization header). It
  // reconnects after a drop (waiting longer each time, up to 30 s), resuming after
  // the last event it had (Last-Event-ID). onState(null) says the stream is open:
  // the node has subscribed it (it does so before it answers), so no event from
  // then on is missed; onState(error) that it is not. A refusal (4xx) is not asked
  // again: it would be refused again.
  function subscribe(params, onEvent, onState) {
    const controller = new AbortController();
    let lastId = null;
    let stopped = false;
    let delay = 1000;
    const run = async () => {
      while (!stopped) {
        let reader = null;
        try {
          const extra = lastId ? { "Last-Event-ID": lastId } : {};
          const response = await fetch(url("v1/events", params), {
            headers: headers(extra), cache: "no-store", signal: controller.signal,
          });
          if (!response.ok) {
            const data = await response.json().catch(() => null);
            if (response.status === 400 && lastId) { lastId = null; continue; } // no log
            const err = new ApiError(response.status, data ? data.error : "http_error",
              data ? data.message : response.statusText);
            if (response.status === 401) signOut("The node refused the token.");
            if (response.status < 500) { onState(err); return; }
            throw err;
          }
          onState(null);
          delay = 1000;
          reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const data = [];
              for (const line of block.split("\n")) {
                if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
                else if (line.startsWith("id:")) lastId = line.slice(3).trim();
              }
              if (data.length) onEvent(JSON.parse(data.join("\n")));
            }
          }
          throw new Error("the node ended the stream");
        } catch (err) {
          if (stopped || err.name === "AbortError") return;
          onState(err);
        } finally {
          if (reader) reader.cancel().catch(() => {}); // its connection goes back
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 30000);
      }
    };
    run();
    return () => { stopped = true; controller.abort(); };
  }

  // -- formatting -------------------------------------------------------------------

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }

  const count = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en"));
  const seconds = (s) => (s === null || s === undefined ? "never" : s + " s");
  const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    return td;
  }

  // -- signing in -------------------------------------------------------------------

  function signOut(why) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(why);
  }

  function showLogin(why) {
    stopAll();
    for (const view of document.querySelectorAll(".view")) view.hidden = true;
    $("tabs").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = why || "";
    $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const candidate = $("token").value.trim();
    if (!candidate) return;
    state.token = candidate;
    try {
      state.grant = await api("v1/token");
    } catch (err) {
      state.token = null;
      $("login-error").textContent =
        err.status === 401 ? "This node does not accept that token." : err.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    $("token").value = "";
    open();
  }

  function mayWrite(db) {
    const grant = state.grant;
    return Boolean(grant && grant.rights.includes("write") &&
      (grant.databases === null || grant.databases.includes(db)));
  }

  // -- views ------------------------------------------------------------------------

  function open() {
    $("login").hidden = true;
    $("tabs").hidden = false;
    $("sign-out").hidden = !state.grant.credentials;
    startPolling();
    route();
  }

  function route() {
    if (!state.grant) return;
    const [view, ...rest] = (location.hash.slice(1) || "cluster").split("/");
    const name = ["cluster", "databases", "live"].includes(view) ? view : "cluster";
    state.view = name;
    for (const link of document.querySelectorAll("#tabs a")) {
      link.classList.toggle("active", link.dataset.view === name);
    }
    for (const section of document.querySelectorAll(".view")) {
      section.hidden = section.id !== "view-" + name;
    }
    if (name === "databases") {
      let db = null;
      try {
        db = rest.length ? decodeURIComponent(rest.join("/")) : null;
      } catch (err) {
        db = null; // a bad escape in the address: no database
      }
      if (db !== state.browser.db) openBrowser(db);
    } else {
      closeBrowser(); // its stream goes too: nothing on screen follows it
    }
    if (name === "live") startLive();
    else stopLive();
    refresh();
  }

  async function refresh() {
    if (state.view === "cluster") await refreshCluster();
    else if (state.view === "databases") await refreshDatabases();
    else if (state.view === "live") drawCharts();
  }

  // One poll at a time: the next starts POLL_MS after the last one ended, so a node
  // slow to answer is never asked more than once at a time.
  function startPolling() {
    if (state.polling) return;
    state.polling = true;
    const tick = async () => {
      if (!state.polling) return;
      await sample();
      await refresh();
      if (state.polling) state.timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  // Signed out: nothing the last token could see stays on the page.
  function stopAll() {
    state.polling = false;
    clearTimeout(state.timer);
    stopLive();
    closeBrowser();
    state.grant = null;
    state.samples = [];
    state.members = new Map();
    state.left = [];
    state.lastTraffic = new Map();
    state.live.held = [];
    state.live.count = 0;
    for (const id of ["members", "clients", "databases", "events"]) {
      $(id).tBodies[0].replaceChildren();
    }
    $("event-count").textContent = "";
  }

  function connection(ok, text) {
    const el = $("connection");
    el.textContent = text;
    el.classList.toggle("down", !ok);
  }

  // -- cluster ----------------------------------------------------------------------

  async function refreshCluster() {
    const cluster = await api("v1/cluster").catch(() => null); // the next poll retries
    if (cluster === null) return;
    const now = Date.now() / 1000;
    const seen = new Set(cluster.members.map((m) => m.name));
    for (const [name, member] of state.members) {
      if (!seen.has(name) && member.role === "node") {
        state.left = [{ ...member, at: now }, ...state.left.filter((m) => m.name !== name)];
        state.left.length = Math.min(state.left.length, LEFT_KEPT);
      }
    }
    state.left = state.left.filter((m) => !seen.has(m.name));
    state.members = new Map(cluster.members.map((m) => [m.name, m]));

    const body = $("members").tBodies[0];
    body.replaceChildren();
    for (const member of cluster.members) {
      const row = body.insertRow();
      row.dataset.name = member.name;
      cell(row, member.name);
      cell(row, member.state, "state state-" + member.state);
      cell(row, member.role);
      cell(row, member.address);
      linkCells(row, member.name, member.link, now, true);
    }
    for (const member of state.left) {
      const row = body.insertRow();
      row.dataset.name = member.name;
      cell(row, member.name);
      cell(row, "left", "state state-left").title = "gone since " + clock(member.at);
      cell(row, member.role);
      cell(row, member.address);
      linkCells(row, member.name, null, now, true);
    }
    const clients = $("clients").tBodies[0];
    clients.replaceChildren();
    for (const client of cluster.clients) {
      const row = clients.insertRow();
      row.dataset.name = client.name;
      cell(row, client.name);
      linkCells(row, client.name, client.link, now, false);
    }
    $("no-clients").hidden = cluster.clients.length > 0;
    const linked = new Set([...cluster.members, ...cluster.clients].map((peer) => peer.name));
    for (const peer of [...state.lastTraffic.keys()]) {
      if (!linked.has(peer)) state.lastTraffic.delete(peer); // gone: forgotten
    }
  }

  function linkCells(row, peer, link, now, withRates) {
    if (!link) {
      const blank = withRates ? 6 : 4;
      for (let i = 0; i < blank; i += 1) cell(row, "", "num");
      state.lastTraffic.delete(peer);
      return;
    }
    cell(row, bytes(link.bytes_in), "num");
    cell(row, bytes(link.bytes_out), "num");
    if (withRates) {
      const before = state.lastTraffic.get(peer);
      const dt = before ? now - before.t : 0;
      const rate = (field) =>
        before && dt > 0 && link[field] >= before[field]
          ? bytes((link[field] - before[field]) / dt) + "/s" : "";
      cell(row, rate("bytes_in"), "num");
      cell(row, rate("bytes_out"), "num");
    }
    cell(row, count(link.messages_in), "num");
    cell(row, count(link.messages_out), "num");
    state.lastTraffic.set(peer, { t: now, ...link });
  }

  // -- databases and the key browser -------------------------------------------------

  async function refreshDatabases() {
    const listing = await api("v1/databases").catch(() => null); // the next poll retries
    if (listing === null) return;
    const body = $("databases").tBodies[0];
    body.replaceChildren();
    for (const db of listing.databases) {
      const row = body.insertRow();
      row.className = "clickable" + (db.name === state.browser.db ? " selected" : "");
      row.dataset.name = db.name;
      cell(row, db.name);
      cell(row, count(db.keys), "num");
      cell(row, count(db.held), "num");
      cell(row, count(db.stale), "num");
      cell(row, db.pins.length ? db.pins.map((p) => p || "(everything)").join(", ") : "");
      cell(row, seconds(db.stale_after));
      cell(row, db.ttl === null ? "none" : db.ttl + " s");
      row.addEventListener("click", () => {
        location.hash = "databases/" + encodeURIComponent(db.name);
      });
    }
    $("no-databases").hidden = listing.databases.length > 0;
    const names = $("database-names");
    names.replaceChildren(...listing.databases.map((db) => new Option(db.name)));
  }

  function closeBrowser() {
    const browser = state.browser;
    if (browser.stream) browser.stream();
    browser.stream = null;
    $("keys").dataset.stream = "closed";
    browser.db = null;
    browser.selected = null;
    browser.editing = null;
    browser.keysAsked += 1; // answers to requests made so far are dropped
    browser.detailAsked += 1;
    $("keys").replaceChildren();
    $("browser-error").textContent = "";
    $("browser").hidden = true;
    $("detail").hidden = true;
  }

  function openBrowser(db) {
    closeBrowser();
    if (db === null) return;
    const browser = state.browser;
    browser.db = db;
    browser.prefix = "";
    browser.cursors = [null];
    $("prefix").value = "";
    $("browser-db").textContent = db;
    $("browser").hidden = false;
    loadKeys();
    // Keys created, changed or deleted show at once: the page, and the open key.
    let pending = null;
    browser.stream = subscribe({ database: db, kinds: CHANGE_KINDS.join(",") }, (event) => {
      if (typeof event.key !== "string") return; // overflow, gap: no key
      if (event.key === browser.selected) {
        if (event.kind === "changed") loadDetail(event.key);
        else if (event.kind !== "created") keyGone(event.kind);
      }
      if (event.kind !== "changed" && event.key.startsWith(browser.prefix) && !pending) {
        pending = setTimeout(() => { pending = null; loadKeys(); }, 50);
      }
    }, (err) => {
      $("keys").dataset.stream = err ? "down" : "open";
      if (err && err.status) $("browser-error").textContent = "Live updates stopped: " + err.message;
    });
  }

  async function loadKeys() {
    const browser = state.browser;
    const db = browser.db;
    const asked = ++browser.keysAsked;
    const after = browser.cursors[browser.cursors.length - 1];
    $("next").disabled = true; // until this page is in: a cursor is pushed once
    let page;
    try {
      page = await api(dbPath(db) + "/keys", {
        params: { prefix: browser.prefix, after, limit: PAGE + 1 },
      });
    } catch (err) {
      if (asked !== browser.keysAsked) return;
      $("browser-error").textContent = err.status === 404
        ? `This node has no database ${db}.` : "The keys could not be read: " + err.message;
      $("keys").replaceChildren();
      return;
    }
    if (asked !== browser.keysAsked) return; // a later page, prefix or database was asked
    $("browser-error").textContent = "";
    const more = page.length > PAGE;
    browser.keys = page.slice(0, PAGE);
    const list = $("keys");
    list.replaceChildren();
    for (const key of browser.keys) {
      const item = document.createElement("li");
      item.textContent = key;
      item.dataset.key = key;
      if (key === browser.selected) item.className = "selected";
      item.addEventListener("click", () => selectKey(key));
      list.append(item);
    }
    $("no-keys").hidden = browser.keys.length > 0;
    $("previous").disabled = browser.cursors.length === 1;
    $("next").disabled = !more;
    $("page-label").textContent = "page " + browser.cursors.length;
  }

  function selectKey(key) {
    state.browser.selected = key;
    for (const item of $("keys").children) {
      item.classList.toggle("selected", item.dataset.key === key);
    }
    $("editor").hidden = true;
    state.browser.editing = null;
    loadDetail(key);
  }

  async function readValue(db, key) {
    if (!dotted(key)) return api(keyPath(db, key));
    const got = await api(dbPath(db) + "/get-many", {
      method: "POST", body: JSON.stringify([key]),
    });
    if (!Object.hasOwn(got.values, key)) throw new ApiError(404, "not_found", "no such key");
    return got.values[key];
  }

  async function loadDetail(key) {
    const browser = state.browser;
    const db = browser.db;
    const asked = ++browser.detailAsked;
    $("detail").hidden = false;
    $("detail-key").textContent = key;
    $("detail-error").textContent = "";
    if (browser.editing !== key) {
      // Nothing of another key stays to be edited while this one loads.
      $("detail-value").textContent = "";
      delete $("detail-value").dataset.key;
      $("detail-actions").hidden = true;
    }
    let info = null;
    let value;
    try {
      if (!dotted(key)) info = await api(keyPath(db, key) + "/info");
      value = await readValue(db, key);
    } catch (err) {
      if (asked !== browser.detailAsked) return;
      keyGone("deleted");
      if (err.status !== 404) $("detail-error").textContent = err.message;
      return;
    }
    if (asked !== browser.detailAsked) return; // another key, or a newer read of it
    const facts = info === null ? [["where", "not shown for a key named . or .."]] : [
      ["held here", info.held ? (info.stale ? "yes, stale" : "yes") : "no (read from a holder)"],
      ["holders", info.holders.length ? info.holders.join(", ") : "none known but this node"],
      ["generation", info.generation],
      ["pinned", info.pinned ? "yes" : "no"],
      ["time to live", info.ttl === null ? "none" : info.ttl.toFixed(1) + " s"],
    ];
    const list = $("detail-info");
    list.replaceChildren();
    for (const [term, text] of facts) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = String(text);
      list.append(dt, dd);
    }
    $("detail-value").textContent = JSON.stringify(value, null, 2);
    $("detail-value").dataset.json = JSON.stringify(value);
    $("detail-value").dataset.key = key;
    $("detail-actions").hidden = !mayWrite(db) || browser.editing === key;
  }

  function keyGone(how) {
    $("detail-info").replaceChildren();
    $("detail-value").textContent = "";
    delete $("detail-value").dataset.key;
    $("detail-actions").hidden = true;
    $("editor").hidden = true;
    state.browser.editing = null;
    $("detail-error").textContent = how === "expired" ? "This key expired." : "This key was deleted.";
  }

  function confirmAction(text, ok) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = ok;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((done) => {
      dialog.addEventListener("close", () => done(dialog.returnValue === "ok"), { once: true });
    });
  }

  function startEdit() {
    const shown = $("detail-value");
    const key = state.browser.selected;
    if (shown.dataset.key !== key) return; // its value is not in yet
    state.browser.editing = key;
    $("editor-text").value = JSON.stringify(JSON.parse(shown.dataset.json), null, 2);
    $("editor-error").textContent = "";
    $("editor").hidden = false;
    $("detail-actions").hidden = true;
    $("editor-text").focus();
  }

  async function save(event) {
    event.preventDefault();
    const { db, editing: key } = state.browser;
    if (key === null) return;
    let text = $("editor-text").value;
    try {
      text = JSON.stringify(JSON.parse(text));
    } catch (err) {
      $("editor-error").textContent = "Not JSON: " + err.message;
      return;
    }
    if (!(await confirmAction(`Write this value to ${key} in ${db}?`, "Write"))) return;
    try {
      if (dotted(key)) {
        const body = "{" + JSON.stringify(key) + ":" + text + "}";
        await api(dbPath(db) + "/set-many", { method: "POST", body });
      } else {
        await api(keyPath(db, key), { method: "PUT", body: text });
      }
    } catch (err) {
      $("editor-error").textContent = err.message;
      return;
    }
    $("editor").hidden = true;
    state.browser.editing = null;
    if (state.browser.selected === key) loadDetail(key);
  }

  async function remove() {
    const { db, selected: key } = state.browser;
    if (key === null) return;
    if (!(await confirmAction(`Delete ${key} from ${db}, on every node?`, "Delete"))) return;
    try {
      if (dotted(key)) {
        const body = JSON.stringify([key]);
        await api(dbPath(db) + "/delete-many", { method: "POST", body });
      } else {
        await api(keyPath(db, key), { method: "DELETE" });
      }
    } catch (err) {
      $("detail-error").textContent = err.message;
      return;
    }
    if (state.browser.selected === key) {
      state.browser.selected = null;
      $("detail").hidden = true;
    }
    loadKeys();
  }

  // -- live: charts and the event stream ---------------------------------------------

  async function sample() {
    let stats;
    try {
      stats = await api("v1/stats");
    } catch (err) {
      if (err instanceof ApiError && err.status !== 401) connection(false, "error: " + err.message);
      else if (!(err instanceof ApiError)) connection(false, "unreachable");
      return;
    }
    connection(true, "connected");
    const events = stats.events || {};
    const total = (kinds) => kinds.reduce((sum, kind) => sum + (events[kind] || 0), 0);
    const memory = stats.memory || {};
    const traffic = stats.traffic || {};
    state.samples.push({
      t: Date.now() / 1000,
      changes: total(CHANGE_KINDS),
      events: Object.values(events).reduce((a, b) => a + b, 0),
      bytesIn: traffic.bytes_in || 0,
      bytesOut: traffic.bytes_out || 0,
      memory: memory.used || 0,
      limit: memory.limit === undefined ? null : memory.limit,
      evicted: memory.evicted ? memory.evicted.disk + memory.evicted.peer : 0,
    });
    if (state.samples.length > HISTORY + 1) state.samples.shift();
  }

  // Per second between samples, of a counter: [t, rate] points.
  function rates(field) {
    const out = [];
    const samples = state.samples;
    for (let i = 1; i < samples.length; i += 1) {
      const dt = samples[i].t - samples[i - 1].t;
      const dv = samples[i][field] - samples[i - 1][field];
      if (dt > 0) out.push([samples[i].t, Math.max(0, dv / dt)]);
    }
    return out;
  }

  const levels = (field) => state.samples.map((s) => [s.t, s[field]]);

  function drawCharts() {
    const last = (points) => (points.length ? points[points.length - 1][1] : 0);
    const perSecond = (n) => count(Math.round(n)) + "/s";
    const charts = [
      ["changes", "Changes a second",
        [rates("changes")], perSecond],
      ["events", "Events a second (all kinds)", [rates("events")], perSecond],
      ["traffic", "Link bytes a second", [rates("bytesIn"), rates("bytesOut")],
        (n) => bytes(n) + "/s", ["in", "out"]],
      ["memory", "Memory of held values", [levels("memory")], bytes],
      ["evictions", "Evictions a second", [rates("evicted")], perSecond],
    ];
    for (const [id, title, series, format, names] of charts) {
      const limit = id === "memory" && state.samples.length
        ? state.samples[state.samples.length - 1].limit : null;
      drawChart($("chart-" + id), series, format, limit);
      const caption = $("caption-" + id);
      caption.replaceChildren(document.createTextNode(title + ": "));
      series.forEach((points, i) => {
        if (names) {
          const swatch = document.createElement("span");
          swatch.className = "swatch swatch-" + i;
          caption.append(swatch, document.createTextNode(names[i] + " "));
        }
        const now = document.createElement("b");
        now.textContent = format(last(points));
        caption.append(now);
      });
      if (limit) caption.append(document.createTextNode(" of " + bytes(limit)));
    }
  }

  function drawChart(canvas, series, format, ceiling) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, height);
    // The last HISTORY seconds, or as far back as the first sample: a chart fills
    // its width from the page's first second on.
    const now = Date.now() / 1000;
    const first = state.samples.length ? state.samples[0].t : now;
    const span = Math.max(10, Math.min(HISTORY, now - first));
    const from = now - span;
    let top = ceiling || 0;
    for (const points of series) for (const [, v] of points) top = Math.max(top, v);
    top = niceCeiling(top);
    const left = 4;
    const bottom = height - 14;
    const x = (t) => left + ((t - from) / span) * (width - left - 4);
    const y = (v) => bottom - (v / top) * (bottom - 12);
    ctx.strokeStyle = "#dde1e8";
    ctx.fillStyle = "#687086";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (const level of [0, 0.5, 1]) {
      ctx.beginPath();
      ctx.moveTo(left, y(top * level) + 0.5);
      ctx.lineTo(width - 4, y(top * level) + 0.5);
      ctx.stroke();
    }
    ctx.fillText(format(top), left + 2, y(top) - 2);
    const ago = span >= 120 ? Math.round(span / 60) + " min ago" : Math.round(span) + " s ago";
    ctx.fillText(ago, left + 2, height - 2);
    ctx.fillText("now", width - 26, height - 2);
    if (ceiling) {
      ctx.strokeStyle = "#c0392b";
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(left, y(ceiling) + 0.5);
      ctx.lineTo(width - 4, y(ceiling) + 0.5);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    series.forEach((points, i) => {
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      points.forEach(([t, v], j) => {
        if (j === 0) ctx.moveTo(x(t), y(v));
        else ctx.lineTo(x(t), y(v));
      });
      ctx.stroke();
    });
    canvas.dataset.points = String(series.reduce((n, points) => n + points.length, 0));
  }

  function niceCeiling(value) {
    if (value <= 0) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function liveParams() {
    const kinds = [...document.querySelectorAll("#filter-kinds input:checked")]
      .map((box) => box.value);
    return {
      database: $("filter-database").value.trim(),
      prefix: $("filter-prefix").value,
      kinds: kinds.length === KINDS.length ? "" : kinds.join(","),
    };
  }

  function startLive() {
    const live = state.live;
    if (live.stream) return;
    const params = liveParams();
    if (params.kinds === "" && document.querySelectorAll("#filter-kinds input:checked").length === 0) {
      $("stream-error").textContent = "Choose at least one kind.";
      return;
    }
    live.stream = subscribe(params, (event) => {
      live.count += 1;
      if (live.paused) {
        live.held.push(event);
        if (live.held.length > PAUSED_EVENTS) live.held.shift();
      } else {
        showEvent(event);
      }
      showCount();
    }, (err) => {
      $("stream-error").textContent = err ? "The event stream stopped: " + err.message : "";
      $("events").dataset.stream = err ? "down" : "open";
      $("events").dataset.query = url("v1/events", params).search; // what it was opened for
    });
  }

  function stopLive() {
    if (state.live.stream) state.live.stream();
    state.live.stream = null;
    $("events").dataset.stream = "closed";
  }

  function restartLive() {
    stopLive();
    $("stream-error").textContent = "";
    if (state.view === "live") startLive();
  }

  function showCount() {
    const live = state.live;
    const held = live.paused && live.held.length ? ` (${count(live.held.length)} held)` : "";
    $("event-count").textContent = count(live.count) + " received" + held;
  }

  function showEvent(event) {
    const body = $("events").tBodies[0];
    const row = body.insertRow(0);
    row.dataset.kind = event.kind;
    cell(row, clock(event.time));
    cell(row, event.kind, "kind kind-" + event.kind);
    cell(row, event.database, "mono");
    cell(row, event.key, "mono");
    cell(row, event.origin || event.member || "");
    let details = "";
    if (event.kind === "custom") details = event.name + " " + JSON.stringify(event.payload);
    else if (event.payload !== undefined) details = JSON.stringify(event.payload);
    cell(row, details, "mono");
    while (body.rows.length > EVENT_ROWS) body.deleteRow(body.rows.length - 1);
  }

  function togglePause() {
    const live = state.live;
    live.paused = !live.paused;
    $("pause").textContent = live.paused ? "Resume" : "Pause";
    $("pause").classList.toggle("on", live.paused);
    if (!live.paused) {
      for (const event of live.held.splice(0)) showEvent(event);
    }
    showCount();
  }

  // -- start --------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    window.addEventListener("hashchange", route);
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      state.browser.prefix = $("prefix").value;
      state.browser.cursors = [null];
      loadKeys();
    });
    $("next").addEventListener("click", () => {
      const { keys, cursors } = state.browser;
      if (!keys.length || $("next").disabled) return;
      cursors.push(keys[keys.length - 1]);
      loadKeys();
    });
    $("previous").addEventListener("click", () => {
      if (state.browser.cursors.length > 1) state.browser.cursors.pop();
      loadKeys();
    });
    $("edit").addEventListener("click", startEdit);
    $("delete").addEventListener("click", remove);
    $("editor").addEventListener("submit", save);
    $("cancel").addEventListener("click", () => {
      $("editor").hidden = true;
      state.browser.editing = null;
      $("detail-actions").hidden = !mayWrite(state.browser.db);
    });
    const kinds = $("filter-kinds");
    for (const kind of KINDS) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = kind;
      box.checked = true;
      box.addEventListener("change", restartLive);
      label.append(box, document.createTextNode(" " + kind));
      kinds.append(label);
    }
    let typing = null;
    for (const id of ["filter-database", "filter-prefix"]) {
      $(id).addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(restartLive, 300);
      });
    }
    $("pause").addEventListener("click", togglePause);
  }

  // Reach the node, then ask what the token may do. Only a 401 forgets the token:
  // a node restarting or out of reach is asked again, waiting longer each time.
  async function connect(wait) {
    try {
      const health = await fetch(url("healthz"), {
        cache: "no-store", signal: AbortSignal.timeout(REQUEST_MS),
      });
      const body = await health.json();
      $("node").textContent = `node ${body.node}` + (body.version ? `, pydds ${body.version}` : "");
      state.grant = await api("v1/token");
    } catch (err) {
      if (err.status === 401) {
        state.token = null;
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("");
        return;
      }
      connection(false, "unreachable, trying again");
      await sleep(wait);
      connect(Math.min(wait * 2, 30000));
      return;
    }
    open();
  }

  wire();
  connect(RETRY_MS);
})();
