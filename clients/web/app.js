// The Tickwire demo page: lobby, game, voice call, spectator view and
// replays, built on tickwire.js, for any game mode the server runs. Links:
// /?room=auto&name=ana, /?room=auto&mode=shooter&name=ana,
// /?room=<id>&name=ana, /?watch=<room>, /?watch=<room>&transport=poll,
// /?watch=<room>&delay=<seconds>, /?replay=<room> (&from=<tick>,
// &speed=<x>). A game takes its state over a WebRTC DataChannel when it
// can; &transport=ws keeps it on the WebSocket.
//
// window.tickwire.state() returns a plain summary of everything the page
// knows (for tests and debugging); window.tickwire.game, .spectator,
// .replay and .call are the live clients.

import { listRooms, listModes, listReplays, createRoom, join, spectate, watchReplay, joinCall, MAX_DELAY } from "./tickwire.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const errors = [];

const page = {
  view: "lobby",
  game: null,
  spectator: null,
  replay: null,
  call: null,
  errors,
  state,
};
window.tickwire = page;

function noteError(message) {
  errors.push({ message: String(message), at: Date.now() });
  if (errors.length > 100) errors.shift();
}
window.addEventListener("unhandledrejection", (e) => noteError(e.reason?.message ?? e.reason));

// ---- shared bits ----------------------------------------------------------

function pageURL(query) {
  const u = new URL(location.pathname, location.origin);
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") u.searchParams.set(k, v);
  return u;
}

function describe(c) {
  switch (c.state) {
    case "reconnecting":
      return c.retryAt ? `reconnecting in ${Math.max(0, Math.ceil((c.retryAt - Date.now()) / 1000))}s` : "reconnecting";
    case "closed":
      return `closed: ${c.reason ?? "closed"}`;
    default:
      return c.state;
  }
}

let connSource = null;
function showConnection() {
  const el = $("conn");
  const c = connSource?.connection ?? { state: "idle" };
  el.dataset.state = c.state;
  el.textContent = describe(c);
  el.title = c.reason ?? "";
}
setInterval(showConnection, 250);

// The host:port of a node's base URL when it is not this page's server,
// else "" (a room or a game there is shown with it).
function elsewhere(url) {
  if (!url) return "";
  try {
    const u = new URL(url);
    return u.origin === location.origin ? "" : u.host;
  } catch {
    return "";
  }
}

function colorFor(id) {
  return `hsl(${(id * 137.508) % 360} 70% 60%)`;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

// ---- rendering ------------------------------------------------------------
//
// One renderer per shipped mode, and a generic one for any other: each
// draws a View (tickwire.js) on the field's background. A renderer is
// picked by the room's mode, from the welcome or the spectator `room` event.

const canvas = $("canvas");
const ctx2d = canvas.getContext("2d");

const RENDERERS = { arena: drawArena, shooter: drawShooter };

/** The renderer's name for a mode: its own, or "generic". */
function rendererFor(mode) {
  return Object.hasOwn(RENDERERS, mode) ? mode : "generic";
}

/**
 * Draws a frame: the field, then what the mode's renderer draws.
 * `ctx` is {world, view, mode, schema, aimAt?, title?}.
 */
function draw({ world, view, mode, schema, aimAt, title }) {
  const { w, h } = world ?? { w: 1280, h: 720 };
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const g = ctx2d;
  g.fillStyle = "#0b101a";
  g.fillRect(0, 0, w, h);
  g.strokeStyle = "#161e2e";
  g.lineWidth = 1;
  for (let x = 0; x <= w; x += 40) {
    g.beginPath();
    g.moveTo(x + 0.5, 0);
    g.lineTo(x + 0.5, h);
    g.stroke();
  }
  for (let y = 0; y <= h; y += 40) {
    g.beginPath();
    g.moveTo(0, y + 0.5);
    g.lineTo(w, y + 0.5);
    g.stroke();
  }
  const renderer = rendererFor(mode);
  page.renderer = view ? renderer : null;
  page.drawn = view ? [...view.players.values()].map((p) => ({ id: p.id, x: p.x, y: p.y })) : [];
  if (canvas.dataset.renderer !== renderer) canvas.dataset.renderer = renderer;
  if (view && renderer === "generic") drawGeneric(g, world, view, schema);
  else if (view) RENDERERS[renderer](g, world, view, { aimAt });
  if (title) {
    g.font = "600 14px system-ui, sans-serif";
    g.textAlign = "right";
    g.fillStyle = "#8893aa";
    g.fillText(title, w - 12, h - 12);
  }
}

/** A player's disc, outlined when it is this page's player. */
function drawDisc(g, p, r, mine) {
  g.fillStyle = colorFor(p.id);
  g.beginPath();
  g.arc(p.x, p.y, r, 0, Math.PI * 2);
  g.fill();
  if (mine) {
    g.strokeStyle = "#fff";
    g.lineWidth = 3;
    g.stroke();
  }
}

/** arena: orbs, and players with their name and score. */
function drawArena(g, world, view) {
  for (const o of view.orbs) {
    g.fillStyle = "#f6e05e";
    g.shadowColor = "#f6e05e";
    g.shadowBlur = 12;
    g.beginPath();
    g.arc(o.x, o.y, 8, 0, Math.PI * 2);
    g.fill();
  }
  g.shadowBlur = 0;
  const r = world?.r ?? 16;
  g.font = "600 14px system-ui, sans-serif";
  g.textAlign = "center";
  for (const p of view.players.values()) {
    drawDisc(g, p, r, p.id === view.me);
    g.fillStyle = "#dfe6f3";
    g.fillText(`${p.name} ${p.score}`, p.x, p.y - r - 8);
  }
}

/** Full hp in the shooter (a player spawns with it). */
const SHOOTER_HP = 100;

/**
 * shooter: bullets as small dots in their owner's color, players as discs
 * with an aim line and an hp bar, and a crosshair where this page aims.
 */
function drawShooter(g, world, view, { aimAt }) {
  for (const b of view.tables.b ?? []) {
    g.fillStyle = colorFor(b.owner);
    g.shadowColor = "#fff";
    g.shadowBlur = 6;
    g.beginPath();
    g.arc(b.x, b.y, 3, 0, Math.PI * 2);
    g.fill();
  }
  g.shadowBlur = 0;
  const r = world?.r ?? 14;
  g.font = "600 13px system-ui, sans-serif";
  g.textAlign = "center";
  for (const p of view.players.values()) {
    drawDisc(g, p, r, p.id === view.me);
    // Aim line.
    g.strokeStyle = "#dfe6f3";
    g.lineWidth = 3;
    g.beginPath();
    g.moveTo(p.x + Math.cos(p.aim) * r * 0.5, p.y + Math.sin(p.aim) * r * 0.5);
    g.lineTo(p.x + Math.cos(p.aim) * (r + 12), p.y + Math.sin(p.aim) * (r + 12));
    g.stroke();
    // hp bar.
    const bw = 2 * r + 8;
    const frac = Math.max(0, Math.min(1, p.hp / Math.max(SHOOTER_HP, p.hp)));
    g.fillStyle = "#2a3247";
    g.fillRect(p.x - bw / 2, p.y - r - 10, bw, 4);
    g.fillStyle = frac > 0.5 ? "#68d391" : frac > 0.25 ? "#f6ad55" : "#fc8181";
    g.fillRect(p.x - bw / 2, p.y - r - 10, bw * frac, 4);
    g.fillStyle = "#dfe6f3";
    g.fillText(`${p.name} ${p.score}`, p.x, p.y - r - 16);
  }
  if (aimAt) {
    g.strokeStyle = "rgba(223, 230, 243, .7)";
    g.lineWidth = 1.5;
    g.beginPath();
    g.arc(aimAt.x, aimAt.y, 9, 0, Math.PI * 2);
    g.moveTo(aimAt.x - 14, aimAt.y);
    g.lineTo(aimAt.x + 14, aimAt.y);
    g.moveTo(aimAt.x, aimAt.y - 14);
    g.lineTo(aimAt.x, aimAt.y + 14);
    g.stroke();
  }
}

/**
 * Any other mode: every table with x and y columns as dots labelled with
 * their ids (players as discs), every other table as text rows.
 */
function drawGeneric(g, world, view, schema) {
  const text = [];
  g.font = "600 12px system-ui, sans-serif";
  g.textAlign = "center";
  for (const t of schema?.tables ?? []) {
    const rows = view.tables[t.name] ?? [];
    if (t.index.x === undefined || t.index.y === undefined) {
      text.push(`${t.name} [${t.columns.join(", ")}]: ${rows.length} rows`);
      for (const row of rows.slice(0, 8)) text.push("  " + t.columns.map((c) => fmt(row[c])).join("  "));
      continue;
    }
    const player = t.name === view.playerTable;
    const r = player ? (world?.r || 12) : 5;
    for (const row of rows) {
      drawDisc(g, row, r, player && row.id === view.me);
      g.fillStyle = "#dfe6f3";
      g.fillText(String(row.id), row.x, row.y - r - 5);
    }
  }
  g.font = "12px ui-monospace, monospace";
  g.textAlign = "left";
  g.fillStyle = "#8893aa";
  const h = world?.h ?? 720;
  text.forEach((line, i) => g.fillText(line, 12, h - 12 - (text.length - 1 - i) * 16));
}

/** A number for text rows: integers as they are, others to 2 decimals. */
function fmt(v) {
  return typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : String(v);
}

/** The scoreboard: the player table's rows, by score when it has one. */
function showScores(snap, me) {
  const rows = [...(snap?.players.values() ?? [])].sort((a, b) => (b.score ?? 0) - (a.score ?? 0) || a.id - b.id);
  $("scores").replaceChildren(
    ...rows.map((p) =>
      el(
        "tr",
        { className: p.id === me ? "me" : "" },
        el("td", {}, el("span", { className: "swatch", style: `background:${colorFor(p.id)}` }), p.name),
        el("td", {}, p.score === undefined ? "–" : String(p.score)),
        el("td", {}, p.rtt ? `${p.rtt} ms` : "–"),
      ),
    ),
  );
}

function showChat(log) {
  const list = $("chat-log");
  list.replaceChildren(
    ...log.slice(-60).map((m) =>
      m.kind === "chat" ? el("li", {}, el("b", {}, m.name), " ", m.text) : el("li", { className: "notice" }, m.text),
    ),
  );
  list.scrollTop = list.scrollHeight;
}

function showShareLinks(room) {
  const play = pageURL({ room });
  const watch = pageURL({ watch: room });
  $("share-link").href = play;
  $("share-link").textContent = play.href;
  $("watch-link").href = watch;
  $("watch-link").textContent = watch.href;
}

// ---- lobby ----------------------------------------------------------------

/** The modes the server runs (GET /api/modes), once loaded. */
let modes = null;
const modesLoaded = listModes()
  .then((m) => (modes = m))
  .catch((err) => {
    noteError(`modes: ${err.message}`);
    return [];
  });

function modeTitle(name) {
  return modes?.find((m) => m.name === name)?.title ?? name ?? "arena";
}

function startLobby() {
  page.view = "lobby";
  $("lobby").hidden = false;
  $("view-title").textContent = "lobby";
  const nameInput = $("name-input");
  nameInput.value = params.get("name") ?? localStorage.getItem("tickwire.name") ?? "";
  const wanted = params.get("room");
  if (wanted && wanted !== "auto") $("quick-play").textContent = `Join ${wanted}`;
  const select = $("mode-select");
  const mode = () => select.value || "arena";
  modesLoaded.then((list) => {
    if (list.length === 0) return; // an older server: arena only
    const keep = params.get("mode") ?? localStorage.getItem("tickwire.mode") ?? "arena";
    select.replaceChildren(...list.map((m) => el("option", { value: m.name, title: m.name }, m.title || m.name)));
    select.value = list.some((m) => m.name === keep) ? keep : list[0].name;
    page.modes = list.map((m) => m.name);
  });
  const go = (room, withMode) => {
    const name = nameInput.value.trim();
    if (!name) {
      nameInput.focus();
      $("lobby-error").textContent = "Enter a name first.";
      return;
    }
    localStorage.setItem("tickwire.name", name);
    localStorage.setItem("tickwire.mode", mode());
    location.assign(pageURL({ room, mode: withMode ? mode() : undefined, name }));
  };
  $("lobby-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const room = wanted || "auto";
    go(room, room === "auto");
  });
  $("create-room").addEventListener("click", async () => {
    if (!nameInput.value.trim()) return go("");
    try {
      const room = await createRoom({ mode: mode(), private: $("create-private").checked, maxPlayers: Number($("create-seats").value) || undefined });
      go(room.id);
    } catch (err) {
      $("lobby-error").textContent = err.message;
      noteError(err.message);
    }
  });
  page.rooms = [];
  const refresh = async () => {
    try {
      page.rooms = await listRooms();
      showRooms(page.rooms, go);
      $("rooms-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      $("rooms-updated").textContent = `(${err.message})`;
    }
  };
  refresh();
  modesLoaded.then(() => showRooms(page.rooms, go)); // with the modes' titles
  setInterval(refresh, 3000);

  page.replays = [];
  const refreshReplays = async () => {
    try {
      page.replays = await listReplays({ limit: 10 });
      showReplays(page.replays);
      $("replays-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      $("replays-updated").textContent = `(${err.message})`;
    }
  };
  refreshReplays();
  modesLoaded.then(() => showReplays(page.replays));
  setInterval(refreshReplays, 5000);
}

/** A duration in seconds as m:ss (h:mm:ss from an hour). */
function clockTime(seconds) {
  const t = Math.max(0, Math.floor(seconds));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** When a recording started: the time today, else the date and time. */
function when(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

/** The lobby's recent recordings, each with a link to its replay. */
function showReplays(list) {
  $("replays-empty").hidden = list.length > 0;
  $("replays").replaceChildren(
    ...list.map((r) => {
      const length = el("td", {}, clockTime(r.ticks / Math.max(1, r.hz)));
      if (r.end === undefined) length.append(el("span", { className: "live-badge", title: "the room is still running" }, "● live"));
      const row = el(
        "tr",
        {},
        el("td", {}, r.room),
        el("td", { className: "mode", title: r.mode }, modeTitle(r.mode)),
        el("td", { className: "when" }, when(r.start)),
        length,
        el("td", { className: "actions" }, el("a", { href: pageURL({ replay: r.room }).href, className: "replay-link" }, "Replay")),
      );
      row.dataset.room = r.room;
      return row;
    }),
  );
}

function showRooms(rooms, go) {
  $("rooms-empty").hidden = rooms.length > 0;
  $("rooms").replaceChildren(
    ...rooms.map((r) => {
      // A room of another node is joined through this one: the server
      // answers `moved` and the game follows it there.
      const joinBtn = el("button", { type: "button", className: "join" }, "Join");
      joinBtn.addEventListener("click", () => go(r.id));
      const host = elsewhere(r.url);
      const idCell = el("td", {}, r.id);
      if (host) idCell.append(" ", el("small", { className: "node", title: `hosted at ${r.url}` }, host));
      const watch = el("a", { href: pageURL({ watch: r.id }).href }, "Watch");
      const row = el(
        "tr",
        {},
        idCell,
        el("td", { className: "mode", title: r.mode ?? "arena" }, modeTitle(r.mode ?? "arena")),
        el("td", {}, `${r.players}/${r.maxPlayers}`),
        el("td", {}, String(r.spectators)),
        el("td", {}, `${r.hz} Hz`),
        el("td", { className: "actions" }, joinBtn, " ", watch),
      );
      row.dataset.room = r.id;
      row.dataset.mode = r.mode ?? "arena";
      if (host) row.dataset.node = host;
      return row;
    }),
  );
}

// ---- game -----------------------------------------------------------------

const KEYS = {
  KeyW: [0, -1], ArrowUp: [0, -1],
  KeyS: [0, 1], ArrowDown: [0, 1],
  KeyA: [-1, 0], ArrowLeft: [-1, 0],
  KeyD: [1, 0], ArrowRight: [1, 0],
};

/** A mouse event's position in field coordinates (the canvas's pixels). */
function fieldPoint(e) {
  const rect = canvas.getBoundingClientRect();
  const cw = canvas.clientWidth || rect.width;
  const ch = canvas.clientHeight || rect.height;
  return {
    x: ((e.clientX - rect.left - canvas.clientLeft) * canvas.width) / cw,
    y: ((e.clientY - rect.top - canvas.clientTop) * canvas.height) / ch,
  };
}

function startGame(room, name, mode) {
  page.view = "game";
  $("game").hidden = false;
  $("view-title").textContent = `playing as ${name}`;
  const game = join({ name, room, mode: mode || undefined, rtc: params.get("transport") !== "ws" });
  page.game = game;
  connSource = game;

  game.addEventListener("welcome", () => {
    $("view-title").textContent = `${name} in ${game.room} · ${modeTitle(game.mode)}`;
    showShareLinks(game.room);
    if (params.get("room") !== game.room || params.has("mode")) history.replaceState(null, "", pageURL({ room: game.room, name, transport: params.get("transport") ?? undefined }));
  });
  modesLoaded.then(() => game.mode && ($("view-title").textContent = `${name} in ${game.room} · ${modeTitle(game.mode)}`));
  game.addEventListener("chat", () => showChat(game.chatLog));
  game.addEventListener("servererror", (e) => noteError(`${e.detail.code}: ${e.detail.msg}`));
  game.addEventListener("state", showConnection);

  // Keyboard: keys held now, plus keys tapped since the last tick, so a
  // tap shorter than a tick still moves. Space, or a mouse button on the
  // field, is "fire" in modes that have it; the mouse aims (ax, ay).
  const held = new Set();
  const tapped = new Set();
  const firing = new Set(); // "Space", "mouse"
  let fireTapped = false;
  const typingTarget = (e) => e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLSelectElement;
  const has = (field) => game.schema?.input.includes(field) ?? false;
  window.addEventListener("keydown", (e) => {
    if (typingTarget(e)) return;
    if (e.code === "Space" && has("fire")) {
      e.preventDefault();
      firing.add("Space");
      fireTapped = true;
      return;
    }
    if (!(e.code in KEYS)) return;
    e.preventDefault();
    held.add(e.code);
    tapped.add(e.code);
  });
  window.addEventListener("keyup", (e) => {
    held.delete(e.code);
    firing.delete(e.code);
  });
  window.addEventListener("blur", () => {
    held.clear();
    firing.clear();
  });
  canvas.addEventListener("mousemove", (e) => (page.aimAt = fieldPoint(e)));
  canvas.addEventListener("mousedown", (e) => {
    page.aimAt = fieldPoint(e);
    if (e.button !== 0 || !has("fire")) return;
    firing.add("mouse");
    fireTapped = true;
  });
  window.addEventListener("mouseup", (e) => e.button === 0 && firing.delete("mouse"));

  // This page's player where it is drawn: predicted, else the newest row.
  const myPosition = () => game.predicted ?? game.latest?.players.get(game.id) ?? null;

  let lastSent = {};
  let inputTimer = 0;
  const sampleInput = () => {
    let dx = 0;
    let dy = 0;
    for (const k of new Set([...held, ...tapped])) {
      dx += KEYS[k][0];
      dy += KEYS[k][1];
    }
    tapped.clear();
    const values = { dx: Math.sign(dx), dy: Math.sign(dy) };
    if (has("ax") && has("ay")) {
      // Aim: the unit vector from this player to the mouse; (0, 0) keeps
      // the aim the server has.
      const me = myPosition();
      const len = me && page.aimAt ? Math.hypot(page.aimAt.x - me.x, page.aimAt.y - me.y) : 0;
      values.ax = len > 0 ? (page.aimAt.x - me.x) / len : 0;
      values.ay = len > 0 ? (page.aimAt.y - me.y) / len : 0;
    }
    if (has("fire")) values.fire = firing.size > 0 || fireTapped ? 1 : 0;
    fireTapped = false;
    // Send every tick while anything is active, and once when it stops.
    const names = game.schema?.input ?? ["dx", "dy"];
    const active = names.some((k) => (values[k] ?? 0) !== 0);
    const changed = names.some((k) => (values[k] ?? 0) !== (lastSent[k] ?? 0));
    if ((active || changed) && game.input(values)) lastSent = values;
  };
  game.addEventListener("welcome", () => {
    clearInterval(inputTimer);
    lastSent = {};
    inputTimer = setInterval(sampleInput, 1000 / game.world.hz);
  });

  game.addEventListener("snap", () => showScores(game.latest, game.id));

  // Chat and "is typing".
  const input = $("chat-input");
  input.addEventListener("input", () => input.value && game.typing());
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (game.chat(input.value)) input.value = "";
  });
  const showTyping = () => {
    const who = game.typers();
    $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
  };
  game.addEventListener("typing", showTyping);
  setInterval(showTyping, 500);

  setupVoice(game, name);

  const frame = () => {
    const hud = [
      `${game.mode ?? "–"} · tick ${game.latest?.n ?? "–"}`,
      `ping ${game.ping === null ? "–" : game.ping.toFixed(1) + " ms"}  jitter ${game.jitter === null ? "–" : game.jitter.toFixed(1) + " ms"}`,
      `clock offset ${game.clockOffset === null ? "–" : Math.round(game.clockOffset) + " ms"}`,
      `unacked inputs ${game.pending.length}`,
      stateLine(game),
    ];
    const node = elsewhere(game.node);
    if (node) hud.push(`node ${node}`);
    $("hud").textContent = hud.join("\n");
    const aimAt = game.schema?.input.includes("ax") ? page.aimAt : null;
    draw({ world: game.world, view: game.latest ? game.view() : null, mode: game.mode, schema: game.schema, aimAt });
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

/** The HUD's line saying where state frames arrive, and what the channel does. */
function stateLine(game) {
  if (game.stateTransport === "udp") return "state UDP · DataChannel";
  const sc = game.stateChannel;
  let note = "";
  if (sc?.state === "connecting") note = " (offering UDP)";
  else if (sc?.state === "waiting") note = ` (UDP again in ${Math.max(0, Math.ceil((sc.retryAt - Date.now()) / 1000))}s)`;
  return `state TCP · WebSocket${note}`;
}

function setupVoice(game, name) {
  const btn = $("call-btn");
  const mute = $("mute-btn");
  const showPeers = () => {
    const call = page.call;
    $("call-state").textContent = call ? describe(call.connection) : "";
    $("call-peers").replaceChildren(
      ...(call?.peers() ?? []).map((p) =>
        el(
          "li",
          {},
          el("span", {}, p.name || p.id),
          el("span", { className: `state ${p.state}` }, `${p.state} · channel ${p.channel}`),
        ),
      ),
    );
  };
  const showMessages = () => {
    $("dc-log").replaceChildren(
      ...(page.call?.messages ?? []).slice(-20).map((m) => el("li", {}, el("b", {}, m.dir === "out" ? "you" : m.name || m.from), " ", m.text)),
    );
  };
  btn.addEventListener("click", () => {
    if (page.call && page.call.connection.state !== "closed") {
      page.call.leave();
      page.call = null;
      btn.textContent = "Join voice";
      mute.hidden = true;
      $("dc-form").hidden = true;
      showPeers();
      return;
    }
    if (!game.room || game.room === "auto") return;
    // The room's call is on the node hosting the room.
    const call = joinCall({ call: game.room, name, server: game.node });
    page.call = call;
    call.addEventListener("peers", showPeers);
    call.addEventListener("state", showPeers);
    call.addEventListener("message", showMessages);
    call.addEventListener("error", (e) => noteError(e.detail.message));
    btn.textContent = "Leave voice";
    mute.hidden = false;
    mute.textContent = "Mute";
    $("dc-form").hidden = false;
    showPeers();
  });
  mute.addEventListener("click", () => {
    if (!page.call) return;
    page.call.setMuted(!page.call.muted);
    mute.textContent = page.call.muted ? "Unmute" : "Mute";
  });
  $("dc-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("dc-input");
    if (page.call && input.value.trim() && page.call.send(input.value.trim()) > 0) {
      input.value = "";
      showMessages();
    }
  });
  setInterval(showPeers, 1000);
}

// ---- spectator ------------------------------------------------------------

/** A `delay` as the page takes it: whole seconds in 0..MAX_DELAY, else 0. */
function parseDelay(v) {
  const n = Number(v);
  return Number.isInteger(n) && n > 0 ? Math.min(n, MAX_DELAY) : 0;
}

/**
 * Fits a feed's field to its mode (the player radius comes from
 * /api/modes) and names the mode in the title.
 */
function fitWorld(s, title) {
  const field = modes?.find((m) => m.name === s.mode)?.field;
  if (s.world && field?.r) s.world.r = field.r;
  if (s.mode) $("view-title").textContent = `${title} · ${modeTitle(s.mode)}`;
}

/** Hides what a read-only view has no use for: voice, chat input, typing. */
function readOnlyView() {
  $("game").hidden = false;
  $("voice").hidden = true;
  $("chat-form").hidden = true;
  $("typing").hidden = true;
}

function startWatch(room, transport) {
  page.view = "watch";
  readOnlyView();
  $("watch-bar").hidden = false;
  $("view-title").textContent = `watching ${room}`;
  showShareLinks(room);
  const kind = transport === "poll" || transport === "sse" ? transport : "auto";
  const select = $("delay-select");
  let delay = parseDelay(params.get("delay"));
  if (![...select.options].some((o) => Number(o.value) === delay)) {
    select.append(el("option", { value: String(delay) }, `${delay} s behind`));
  }
  select.value = String(delay);
  // The delayed feed is another feed: switching closes this one and opens
  // that one from its start (a `room` event, then its snapshots).
  let s = null;
  const connect = () => {
    s?.close();
    s = spectate({ room, transport: kind, delay });
    page.spectator = s;
    connSource = s;
    s.addEventListener("room", () => fitWorld(s, `watching ${room}`));
    s.addEventListener("state", showConnection);
    s.addEventListener("chat", () => showChat(s.chatLog));
    s.addEventListener("snap", () => showScores(s.latest, null));
    s.addEventListener("closed", offerReplay);
    showChat(s.chatLog);
    $("delay-note").textContent = delay ? `what the room did ${delay} s ago` : "";
  };
  // A recorded room can also be replayed, running or ended.
  const offerReplay = async () => {
    try {
      const recorded = (await listReplays({ limit: 1000 })).some((r) => r.room === room);
      const link = $("watch-replay");
      link.href = pageURL({ replay: room }).href;
      link.hidden = !recorded;
    } catch (err) {
      noteError(`replays: ${err.message}`);
    }
  };
  offerReplay();
  select.addEventListener("change", () => {
    delay = parseDelay(select.value);
    history.replaceState(null, "", pageURL({ watch: room, transport: params.get("transport") ?? undefined, delay: delay || undefined }));
    connect();
  });
  connect();
  modesLoaded.then(() => fitWorld(s, `watching ${room}`));
  const frame = () => {
    $("hud").textContent = [
      `spectating · ${s.transport === "sse" ? "Server-Sent Events" : "long-poll"}${s.delay ? ` · ${s.delay} s behind` : ""}`,
      `${s.mode ?? "–"} · tick ${s.latest?.n ?? "–"}  event ${s.lastEventId ?? "–"}`,
    ].join("\n");
    draw({ world: s.world, view: s.latest ? s.view() : null, mode: s.mode, schema: s.schema, title: s.delay ? `read-only · ${s.delay} s behind` : "read-only" });
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

// ---- replay -----------------------------------------------------------------

/** The speeds the replay page offers. */
const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16];

/**
 * The replay page: a room's recording drawn by its mode's renderer, with
 * play/pause, a speed, a seek bar over its ticks and the chat as it
 * happened.
 */
function startReplay(room) {
  page.view = "replay";
  readOnlyView();
  $("share").hidden = true;
  $("replay-bar").hidden = false;
  const title = `replay of ${room}`;
  $("view-title").textContent = title;
  const asked = Number(params.get("speed"));
  const speed = SPEEDS.includes(asked) ? asked : 1;
  const from = Math.max(0, Number.parseInt(params.get("from") ?? "0", 10) || 0);
  const s = watchReplay({ room, from, speed });
  page.replay = s;
  connSource = s;
  s.addEventListener("room", () => fitWorld(s, title));
  modesLoaded.then(() => fitWorld(s, title));
  s.addEventListener("state", showConnection);
  s.addEventListener("chat", () => showChat(s.chatLog));
  s.addEventListener("seek", () => showChat(s.chatLog));
  s.addEventListener("snap", () => showScores(s.latest, null));

  // The listing gives the number of ticks, for the seek bar's length; a
  // running room's recording grows, so it is read again until it ends.
  page.replayInfo = null;
  const readListing = async () => {
    try {
      const list = await listReplays({ limit: 1000 });
      page.replayInfo = list.find((r) => r.room === room) ?? page.replayInfo;
    } catch (err) {
      noteError(`replays: ${err.message}`);
    }
    if (page.replayInfo?.end === undefined && s.connection.reason !== "replay not found") setTimeout(readListing, 5000);
  };
  readListing();

  const playBtn = $("replay-play");
  playBtn.addEventListener("click", () => (s.replay.paused || s.replay.ended ? s.play() : s.pause()));
  const speedSelect = $("replay-speed");
  speedSelect.replaceChildren(...SPEEDS.map((x) => el("option", { value: String(x) }, `${x}x`)));
  speedSelect.value = String(speed);
  speedSelect.addEventListener("change", () => s.setSpeed(Number(speedSelect.value)));
  const seekBar = $("replay-seek");
  let dragging = false;
  seekBar.addEventListener("input", () => (dragging = true));
  seekBar.addEventListener("change", () => {
    dragging = false;
    s.seek(Number(seekBar.value));
  });
  window.addEventListener("keydown", (e) => {
    if (e.code !== "Space" || e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.target instanceof HTMLButtonElement) return;
    e.preventDefault();
    playBtn.click();
  });

  const frame = () => {
    const r = s.replay;
    const range = replayRange(s, page.replayInfo);
    const seeking = r.seek !== null && r.seek.landed === null;
    const n = seeking ? r.seek.asked : (s.latest?.n ?? null);
    const hz = range.hz;
    seekBar.min = String(range.first);
    seekBar.max = String(range.last);
    if (!dragging && n !== null) seekBar.value = String(n);
    const at = dragging ? Number(seekBar.value) : n;
    let time = at === null ? "tick –" : `tick ${at} / ${range.last} · ${clockTime((at - range.first) / hz)} / ${clockTime((range.last - range.first) / hz)}`;
    if (dragging) time = `seek to ${time}`;
    else if (seeking) time = `seeking to tick ${r.seek.asked}…`;
    else if (s.latest) time += ` · ${new Date(s.latest.st).toLocaleTimeString()}`;
    const bar = $("replay-time");
    if (bar.textContent !== time) bar.textContent = time;
    $("replay-end").hidden = !r.ended;
    const label = r.ended ? "Replay" : r.paused ? "Play" : "Pause";
    if (playBtn.textContent !== label) playBtn.textContent = label;
    if (speedSelect.value !== String(r.speed)) speedSelect.value = String(r.speed);
    $("hud").textContent = [
      `replay · ${r.speed}x${r.ended ? " · end" : r.paused ? " · paused" : ""}`,
      `${s.mode ?? "–"} · tick ${s.latest?.n ?? "–"}  event ${s.lastEventId ?? "–"}`,
    ].join("\n");
    draw({ world: s.world, view: s.latest ? s.view() : null, mode: s.mode, schema: s.schema, title: r.ended ? "end of replay" : r.paused ? "paused" : `replay ${r.speed}x` });
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

/**
 * The ticks a replay's seek bar spans: from the first tick recorded (seen
 * when the replay played from its start) over the number of ticks the
 * listing gives, or to the last tick once the end was played; never short
 * of a tick already seen.
 */
function replayRange(s, info) {
  const r = s.replay;
  const hz = s.world?.hz || info?.hz || 30;
  const first = r.firstTick ?? 1;
  let last = r.endTick ?? (info?.ticks ? first + info.ticks - 1 : first);
  last = Math.max(last, r.lastTick ?? first, first);
  return { first, last, hz };
}

// ---- state for tests and debugging -----------------------------------------

function plainPlayers(snap) {
  const out = {};
  for (const p of snap?.players.values() ?? []) out[p.id] = { name: p.name, x: p.x, y: p.y, score: p.score, rtt: p.rtt };
  return out;
}

/** A snapshot's tables as plain rows: {table: [{id, x, ...}, ...]}. */
function plainTables(snap) {
  const out = {};
  for (const [name, rows] of Object.entries(snap?.tables ?? {})) out[name] = rows.map((r) => ({ ...r }));
  return out;
}

/** A schema as plain data: {input, tables: {name: columns}}. */
function plainSchema(schema) {
  return schema && { input: schema.input, tables: Object.fromEntries(schema.tables.map((t) => [t.name, t.columns])) };
}

function state() {
  const g = page.game;
  const s = page.spectator;
  const rp = page.replay;
  const c = page.call;
  return {
    view: page.view,
    errors: errors.map((e) => e.message),
    rooms: page.rooms ?? null,
    modes: page.modes ?? null,
    renderer: page.renderer ?? null,
    game: g && {
      connection: g.connection,
      id: g.id,
      room: g.room,
      node: g.node,
      moves: g.moves,
      mode: g.mode,
      schema: plainSchema(g.schema),
      world: g.world,
      tick: g.latest?.n ?? null,
      ack: g.latest?.ack ?? null,
      players: plainPlayers(g.latest),
      playerTable: g.latest?.playerTable ?? null,
      tables: plainTables(g.latest),
      predicted: g.predicted,
      pending: g.pending.length,
      lastInput: g.lastInput,
      ping: g.ping,
      jitter: g.jitter,
      clockOffset: g.clockOffset,
      chat: g.chatLog.map((m) => ({ kind: m.kind, id: m.id, name: m.name, text: m.text })),
      typing: g.typers(),
      stateTransport: g.stateTransport,
      rtc: g.stateChannel?.info() ?? null,
      stats: { ...g.stats },
    },
    spectator: s && {
      connection: s.connection,
      transport: s.transport,
      lastEventId: s.lastEventId,
      room: s.info,
      mode: s.mode,
      schema: plainSchema(s.schema),
      tick: s.latest?.n ?? null,
      players: plainPlayers(s.latest),
      tables: plainTables(s.latest),
      chat: s.chatLog.map((m) => ({ kind: m.kind, id: m.id, name: m.name, text: m.text })),
      counts: s.counts,
      reconnects: s.reconnects,
      delay: s.delay,
    },
    replays: page.replays ?? null,
    drawn: page.drawn ?? [],
    replay: rp && {
      connection: rp.connection,
      room: rp.room,
      mode: rp.mode,
      lastEventId: rp.lastEventId,
      tick: rp.latest?.n ?? null,
      st: rp.latest?.st ?? null,
      ...rp.replay,
      seek: rp.replay.seek && { ...rp.replay.seek },
      range: replayRange(rp, page.replayInfo),
      listing: page.replayInfo ?? null,
      players: plainPlayers(rp.latest),
      chat: rp.chatLog.map((m) => ({ kind: m.kind, id: m.id, name: m.name, text: m.text })),
      counts: rp.counts,
      reconnects: rp.reconnects,
      controls: {
        button: $("replay-play").textContent,
        speed: $("replay-speed").value,
        seek: { min: Number($("replay-seek").min), max: Number($("replay-seek").max), value: Number($("replay-seek").value) },
        time: $("replay-time").textContent,
        end: !$("replay-end").hidden,
      },
    },
    call: c && {
      connection: c.connection,
      id: c.id,
      muted: c.muted,
      microphone: Boolean(c.stream),
      peers: c.peers(),
      messages: c.messages.map((m) => ({ dir: m.dir, from: m.from, text: m.text })),
    },
  };
}

// ---- start ------------------------------------------------------------------

const replay = params.get("replay");
const watch = params.get("watch");
const room = params.get("room");
const name = params.get("name")?.trim();
if (replay) startReplay(replay);
else if (watch) startWatch(watch, params.get("transport"));
else if (room && name) startGame(room, name.slice(0, 24), room === "auto" ? params.get("mode") : null);
else startLobby();
showConnection();
