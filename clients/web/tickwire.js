/**
 * tickwire.js: the network layer of the Tickwire browser client, as one
 * ES module with no build step. A game page uses it the way it would use
 * any client library:
 *
 *   import { join, spectate, joinCall, listRooms, listModes } from "./tickwire.js";
 *
 *   const game = join({ name: "ana", room: "auto", mode: "arena" });
 *   game.addEventListener("snap", () => draw(game.view()));
 *   game.addEventListener("chat", (e) => show(e.detail));
 *   setInterval(() => game.input({ dx, dy }), 1000 / game.world.hz);
 *
 * A room runs one game mode (protocol 1.1); its schema, sent in `welcome`
 * and in the spectator `room` event, declares the mode's tables and input
 * fields, and snapshots hold every table's rows as objects keyed by column
 * names (`snap.tables.p[0].x`). Nothing here is specific to one mode except
 * the arena conveniences (`snap.orbs`) and the defaults for a server that
 * sends no schema.
 *
 * It speaks the Tickwire wire protocol version 1 (docs/protocol.md): the
 * player WebSocket /ws/play (msgpack), the spectator feeds (Server-Sent
 * Events with a long-poll fallback, live or delayed), replays of recorded
 * rooms (`listReplays`, `watchReplay`) and the signaling WebSocket
 * /ws/signal for WebRTC voice calls. Every class is an EventTarget; events are
 * CustomEvents whose `detail` carries the message.
 *
 * msgpack comes from @msgpack/msgpack (vendor/msgpack.min.js), loaded by
 * this module when the page has not loaded it already.
 *
 * @module tickwire
 */

const MessagePack =
  globalThis.MessagePack ?? (await loadScript(new URL("./vendor/msgpack.min.js", import.meta.url)));

function loadScript(url) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = url.href;
    s.onload = () => resolve(globalThis.MessagePack);
    s.onerror = () => reject(new Error(`tickwire: cannot load ${url}`));
    document.head.append(s);
  });
}

const encoder = new MessagePack.Encoder({ ignoreUndefined: true });
const decoder = new MessagePack.Decoder();

/** Version of the wire protocol this module speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * Close codes after which a player connection is not retried: the server
 * refused the session for good (bad message, auth, unknown room, full room,
 * frame too big) or the session ended on purpose (1000).
 */
const FATAL_CLOSE = new Set([1000, 1009, 4000, 4001, 4004, 4009]);

/** Why the server closed, by close code, for the connection state. */
const CLOSE_REASONS = {
  1000: "closed",
  1001: "server going away",
  1006: "connection lost",
  1008: "slow consumer",
  1009: "message too big",
  4000: "bad message",
  4001: "unauthorized",
  4004: "room not found",
  4009: "room full",
  4029: "rate limited",
  4307: "room is on another node",
};

/**
 * `moved` answers followed for one join: the protocol asks a client to
 * follow one and to treat a second one as a failure.
 */
const MAX_MOVES = 1;

/**
 * The delay before reconnection attempt number `attempt` (0 for the first):
 * exponential from `min`, doubling each attempt up to `max`, randomized by
 * ±30% (jitter, so that many clients do not retry in step) and kept within
 * [min, max].
 *
 * @param {number} attempt attempts already made since the last success
 * @param {{min?: number, max?: number}} [limits] bounds in ms (1000, 30000)
 * @returns {number} delay in milliseconds
 */
export function backoffDelay(attempt, { min = 1000, max = 30000 } = {}) {
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const jittered = base * (0.7 + 0.6 * Math.random());
  return Math.round(Math.min(max, Math.max(min, jittered)));
}

function httpBase(server) {
  return new URL(server ?? globalThis.location.origin);
}

function wsURL(server, path) {
  const u = new URL(path, httpBase(server));
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u;
}

/**
 * The base URL of a node as a `moved` error names it ("http://10.0.0.2:8080"),
 * without a trailing slash, or null when it is not an http(s) URL.
 */
function nodeBase(url) {
  if (typeof url !== "string" || url === "") return null;
  let u;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.username || u.password) return null;
  u.search = "";
  u.hash = "";
  return u.href.replace(/\/+$/, "");
}

/** The player WebSocket of the node at base URL `base`: http becomes ws, https wss, path + /ws/play. */
function playURL(base) {
  const u = new URL(base);
  u.pathname = u.pathname.replace(/\/+$/, "") + "/ws/play";
  u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  return u;
}

async function readError(res) {
  try {
    const body = await res.json();
    if (body?.error?.message) return `${body.error.code}: ${body.error.message}`;
  } catch {
    // not the JSON error body
  }
  return `HTTP ${res.status}`;
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * A public room as listed by the server.
 * @typedef {object} RoomInfo
 * @property {string} id
 * @property {string} mode
 * @property {number} players
 * @property {number} maxPlayers
 * @property {number} spectators
 * @property {number} hz
 * @property {boolean} [private]
 * @property {string} [url] base URL of the node hosting the room (with
 *   several nodes it may differ from the server asked; joining the room
 *   there or through any node works, see GameClient)
 */

/**
 * Lists the public rooms (GET /api/rooms), fullest first.
 *
 * @param {{server?: string, token?: string, signal?: AbortSignal}} [options]
 *   `server` is the server's origin (default: this page's)
 * @returns {Promise<RoomInfo[]>}
 */
export async function listRooms({ server, token, signal } = {}) {
  const res = await fetch(new URL("/api/rooms", httpBase(server)), {
    headers: authHeaders(token),
    cache: "no-store",
    signal,
  });
  if (!res.ok) throw new Error(`list rooms: ${await readError(res)}`);
  return (await res.json()).rooms ?? [];
}

/**
 * Creates a room (POST /api/rooms).
 *
 * @param {{mode?: string, maxPlayers?: number, private?: boolean}} [room]
 * @param {{server?: string, token?: string}} [options]
 * @returns {Promise<RoomInfo>} the new room; join it by its `id`
 */
export async function createRoom(room = {}, { server, token } = {}) {
  const res = await fetch(new URL("/api/rooms", httpBase(server)), {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders(token) },
    body: JSON.stringify(room),
  });
  if (res.status !== 201) throw new Error(`create room: ${await readError(res)}`);
  return res.json();
}

/**
 * Fetches the ICE servers for WebRTC (GET /api/ice).
 *
 * @param {{server?: string, token?: string}} [options]
 * @returns {Promise<{iceServers: RTCIceServer[], ttl: number}>}
 */
export async function fetchICEServers({ server, token } = {}) {
  const res = await fetch(new URL("/api/ice", httpBase(server)), { headers: authHeaders(token) });
  if (!res.ok) throw new Error(`ice servers: ${await readError(res)}`);
  return res.json();
}

/**
 * A recorded room as the server lists it (protocol 1.1, GET /api/replays).
 * @typedef {object} ReplayInfo
 * @property {string} room the room's id
 * @property {string} mode its game mode
 * @property {number} start when the room opened, Unix ms
 * @property {number} [end] when it ended, Unix ms; absent while it runs
 * @property {number} ticks ticks recorded
 * @property {number} hz the room's tick rate
 */

/**
 * Lists the recorded rooms (GET /api/replays), newest first. `before`
 * (Unix ms) lists those that started before it: the `start` of the last
 * entry of a page asks for the next page.
 *
 * @param {{limit?: number, before?: number, server?: string, token?: string, signal?: AbortSignal}} [options]
 * @returns {Promise<ReplayInfo[]>}
 */
export async function listReplays({ limit, before, server, token, signal } = {}) {
  const u = new URL("/api/replays", httpBase(server));
  if (limit) u.searchParams.set("limit", String(limit));
  if (before) u.searchParams.set("before", String(before));
  const res = await fetch(u, { headers: authHeaders(token), cache: "no-store", signal });
  if (!res.ok) throw new Error(`list replays: ${await readError(res)}`);
  return (await res.json()).replays ?? [];
}

/**
 * A game mode as the server lists it (GET /api/modes).
 * @typedef {object} ModeInfo
 * @property {string} name the mode's id on the wire ("arena", "shooter", ...)
 * @property {string} title a name for people
 * @property {Object<string, string[]>} tables column names by table
 * @property {string[]} input the input fields
 * @property {{w: number, h: number, speed: number, r: number}} [field]
 * @property {Schema} schema the above, parsed (added by listModes)
 */

/**
 * Lists the game modes the server runs (GET /api/modes).
 *
 * @param {{server?: string, token?: string, signal?: AbortSignal}} [options]
 * @returns {Promise<ModeInfo[]>}
 */
export async function listModes({ server, token, signal } = {}) {
  const res = await fetch(new URL("/api/modes", httpBase(server)), {
    headers: authHeaders(token),
    cache: "no-store",
    signal,
  });
  if (!res.ok) throw new Error(`list modes: ${await readError(res)}`);
  return ((await res.json()).modes ?? []).map((m) => ({ ...m, schema: parseSchema(m, m.name) }));
}

// ---- schemas -----------------------------------------------------------------
//
// A mode's state is a set of tables of rows of numbers (protocol 1.1, "Game
// modes"). The schema in `welcome` and in the spectator `room` event lists
// them in `layout`, in order, with what delta frames need: each column's
// step (precision), which columns are the rates of others, and which tables
// are slot tables.

/** Precision of a column whose step is not known: 1/64 unit. */
const DEFAULT_STEP = 1 / 64;

/** The arena's schema, for a server that sends none (protocol version 1). */
const ARENA_WIRE_SCHEMA = {
  input: ["dx", "dy"],
  layout: [
    {
      table: "p",
      columns: ["id", "x", "y", "vx", "vy", "score", "rtt"],
      step: [1, DEFAULT_STEP, DEFAULT_STEP, DEFAULT_STEP, DEFAULT_STEP, 1, 1],
      vel: { x: "vx", y: "vy" },
    },
    { table: "o", columns: ["id", "x", "y"], step: [1, DEFAULT_STEP, DEFAULT_STEP], slots: true },
  ],
};

/**
 * One table of a Schema.
 * @typedef {object} TableLayout
 * @property {string} name
 * @property {string[]} columns column names, "id" first
 * @property {number[]} step each column's precision (1 for the id)
 * @property {Object<string, string>} vel rate column by column (x -> vx)
 * @property {boolean} slots rows in slot order rather than keyed by id
 * @property {Object<string, number>} index column index by name
 * @property {number[]} rate per column, the index of its rate column, or -1
 * @property {number[]} order non-id columns in the bit order of a delta mask
 */

/**
 * A mode's tables and inputs, ready for decoding.
 * @typedef {object} Schema
 * @property {string} mode the mode's name
 * @property {string[]} input input field names, in order
 * @property {TableLayout[]} tables in the order they are written
 * @property {Map<string, TableLayout>} byName
 */

/**
 * Parses a schema as `welcome`, the `room` event and /api/modes carry it:
 * `{tables, input, layout}`. Without `layout` the tables come from `tables`
 * (steps unknown: full snapshots only); without either, the arena's.
 *
 * @param {object} [raw]
 * @param {string} [mode] the mode's name ("arena")
 * @returns {Schema}
 */
export function parseSchema(raw, mode = "arena") {
  let layout = raw?.layout;
  if (!Array.isArray(layout)) {
    layout = raw?.tables && typeof raw.tables === "object"
      ? Object.entries(raw.tables).map(([table, columns]) => ({ table, columns }))
      : ARENA_WIRE_SCHEMA.layout;
  }
  const input = Array.isArray(raw?.input) ? raw.input.map(String) : raw?.layout || raw?.tables ? [] : ARENA_WIRE_SCHEMA.input;
  const tables = [];
  for (const l of layout) {
    const columns = Array.isArray(l?.columns) ? l.columns.map(String) : [];
    if (typeof l?.table !== "string" || columns[0] !== "id") continue; // not a table this client can read
    const index = Object.fromEntries(columns.map((c, i) => [c, i]));
    const step = columns.map((_, i) => (i === 0 ? 1 : Number(l.step?.[i]) > 0 ? Number(l.step[i]) : DEFAULT_STEP));
    const vel = {};
    for (const [col, rate] of Object.entries(l.vel ?? {})) {
      if (index[col] > 0 && index[rate] > 0 && col !== rate) vel[col] = rate;
    }
    const rate = columns.map((c) => (vel[c] ? index[vel[c]] : -1));
    // Mask order: the columns that are some column's rate first, then the
    // others, each group in column order.
    const isRate = columns.map((_, i) => rate.includes(i));
    const order = [];
    for (let i = 1; i < columns.length; i++) if (isRate[i]) order.push(i);
    for (let i = 1; i < columns.length; i++) if (!isRate[i]) order.push(i);
    tables.push({ name: l.table, columns, step, vel, slots: Boolean(l.slots), index, rate, order });
  }
  return { mode, input, tables, byName: new Map(tables.map((t) => [t.name, t])) };
}

/** The arena's schema (protocol version 1). */
export const ARENA_SCHEMA = parseSchema(ARENA_WIRE_SCHEMA, "arena");

/** A row of numbers (column order) as an object keyed by column names. */
function rowObject(t, values) {
  const o = {};
  for (let i = 0; i < t.columns.length; i++) o[t.columns[i]] = values[i] ?? 0;
  return o;
}

/**
 * One player's state in a snapshot: its row of the player table, keyed by
 * column names (for arena id, x, y, vx, vy, score, rtt), plus its name.
 * @typedef {object} PlayerState
 * @property {number} id entity id
 * @property {string} name
 * @property {number} x
 * @property {number} y
 */

/**
 * A snapshot as decoded by this module.
 * @typedef {object} Snapshot
 * @property {number} n tick number
 * @property {number} st server time, Unix ms
 * @property {number} [ack] highest input seq applied (player feed only)
 * @property {string} mode the room's game mode
 * @property {Object<string, object[]>} tables every table's rows, as
 *   objects keyed by column names, in row order
 * @property {string|null} playerTable the table holding the players' rows
 * @property {Map<number, PlayerState>} players the player table's rows by id
 * @property {{id: number, x: number, y: number}[]} orbs the arena's orbs
 *   (its table `o`; empty in other modes)
 */

/**
 * Which table holds the players: the one whose rows include the most of
 * `ids` (this player's and the other known players' ids), a keyed table
 * before a slot table and `known` (the one found before) on a tie; with
 * none of them in any table, `known`, else `p`, else the first keyed table.
 */
function findPlayerTable(schema, tables, ids, known) {
  let best = null;
  let bestScore = 0;
  for (const t of schema.tables) {
    let n = 0;
    for (const r of tables[t.name] ?? []) if (ids.has(r.id)) n++;
    const score = n === 0 ? 0 : 4 * n + (t.slots ? 0 : 2) + (t.name === known ? 1 : 0);
    if (score > bestScore) [best, bestScore] = [t.name, score];
  }
  if (best !== null) return best;
  if (known && tables[known]) return known;
  if (schema.byName.has("p")) return "p";
  return schema.tables.find((t) => !t.slots)?.name ?? null;
}

/**
 * Builds a Snapshot from its tables. `who` names the players: `names` by
 * id, `ids` the ids to look for (see findPlayerTable) and `known` the
 * player table found before, if any.
 */
function makeSnapshot(schema, n, st, ack, tables, who) {
  const playerTable = findPlayerTable(schema, tables, who.ids, who.known);
  const players = new Map();
  const named = playerTable !== null && schema.byName.get(playerTable).index.name !== undefined;
  for (const row of tables[playerTable] ?? []) {
    if (!named) row.name = who.names.get(row.id) ?? `#${row.id}`;
    players.set(row.id, row);
  }
  const orbs = schema.mode === "arena" ? (tables.o ?? []) : [];
  return { n, st, ack, mode: schema.mode, tables, playerTable, players, orbs };
}

/** A full snapshot (`snap` message or event): one key per table. */
function decodeSnap(m, schema, who) {
  const tables = {};
  for (const t of schema.tables) {
    const rows = Array.isArray(m[t.name]) ? m[t.name] : [];
    tables[t.name] = rows.map((r) => rowObject(t, r));
  }
  return makeSnapshot(schema, m.n, m.st, m.ack, tables, who);
}

// ---- delta snapshots ---------------------------------------------------------
//
// Delta mode is an addition to the protocol (docs/protocol.md, "Delta
// snapshots"): the client sends `caps: ["delta"]` in `join`, receives
// `delta` frames whose `d` bytes describe a snapshot relative to one it
// acknowledged (or to nothing: a keyframe), and acknowledges every snapshot
// it rebuilds with `{t: "ack", n}`. The format is the one of wire/delta.go,
// table by table in the schema's layout order; every value travels as a
// whole number of its column's steps (quanta), the id as the integer id.

/** Quanta per unit of the arena's positions and velocities (step 1/64). */
export const DELTA_SCALE = 64;
/** Rebuilt snapshots kept as baselines (the server picks among its last 64). */
const DELTA_KEEP = 128;
/** Most rows a delta frame may add or remove in one table. */
const DELTA_MAX_ROWS = 1 << 16;

/** Reads the varints of a delta's bytes. */
class VarintReader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.b = bytes;
    this.i = 0;
  }

  /** An unsigned varint (LEB128), exact up to 2^53. */
  u() {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (this.i >= this.b.length) throw new Error("delta: truncated");
      const c = this.b[this.i++];
      v += (c & 0x7f) * mul;
      if (c < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error("delta: varint too long");
    }
  }

  /** A zigzag varint. */
  z() {
    const u = this.u();
    return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
  }

  /** A count of items taking at least a byte each. */
  count(limit) {
    const n = this.u();
    if (n > limit || n > this.b.length - this.i) throw new Error(`delta: count ${n} out of range`);
    return n;
  }
}

/**
 * Where a value is expected after `age` ticks, from its value and rate in
 * the baseline and its rate now (all in quanta); the same integer formula
 * as the server's.
 */
export function deltaPredict(q, vb, vc, age, hz) {
  return q + Math.floor((2 * age * vb + (age + 1) * (vc - vb) + hz) / (2 * hz));
}

/**
 * A keyed table: removed ids, entered rows, then a mask and the changed
 * values of every baseline row still present. Rows are arrays of quanta.
 */
function decodeKeyed(r, t, base, age, hz) {
  const cols = t.columns.length;
  const gone = new Set();
  let id = 0;
  for (let i = 0, k = r.count(DELTA_MAX_ROWS); i < k; i++) {
    id += r.u();
    gone.add(id);
  }
  const entered = [];
  id = 0;
  for (let i = 0, k = r.count(DELTA_MAX_ROWS); i < k; i++) {
    id += r.u();
    const row = [id];
    for (let c = 1; c < cols; c++) row.push(r.z());
    entered.push(row);
  }
  const out = [];
  let j = 0;
  const masks = 2 ** t.order.length;
  for (const b of base) {
    if (gone.delete(b[0])) continue;
    const mask = r.u();
    if (mask >= masks) throw new Error(`delta: bad mask in table ${t.name}`);
    const c = b.slice();
    // Rates come first in mask order, so a column's current rate is known
    // before the column itself is predicted from it.
    for (let k = 0; k < t.order.length; k++) {
      const col = t.order[k];
      const v = t.rate[col];
      const ref = v >= 0 ? deltaPredict(b[col], b[v], c[v], age, hz) : b[col];
      c[col] = (mask >>> k) & 1 ? ref + r.z() : ref;
    }
    while (j < entered.length && entered[j][0] < c[0]) out.push(entered[j++]);
    if (j < entered.length && entered[j][0] === c[0]) throw new Error(`delta: row ${c[0]} of ${t.name} entered twice`);
    out.push(c);
  }
  while (j < entered.length) out.push(entered[j++]);
  if (gone.size) throw new Error(`delta: removed row not in the baseline of ${t.name}`);
  return out;
}

/**
 * A slot table: the row count, then the changed slots, each with its id
 * relative to the baseline's at that slot and its other values absolute.
 */
function decodeSlots(r, t, base) {
  const cols = t.columns.length;
  const rows = r.u();
  const changed = r.count(rows);
  if (rows > base.length + changed) throw new Error(`delta: ${rows} slots of ${t.name} out of range`);
  const out = [];
  let slot = -1;
  for (let i = 0; i < changed; i++) {
    const next = slot + 1 + r.u();
    if (next >= rows) throw new Error(`delta: slot of ${t.name} out of range`);
    for (let s = slot + 1; s < next; s++) out.push(base[s]);
    slot = next;
    const row = [(base[slot]?.[0] ?? 0) + r.z()];
    for (let c = 1; c < cols; c++) row.push(r.z());
    out.push(row);
  }
  for (let s = slot + 1; s < rows; s++) out.push(base[s]);
  if (out.some((x) => x === undefined)) throw new Error(`delta: slot of ${t.name} missing`);
  return out;
}

/**
 * Rebuilds the quantized state a delta's bytes describe.
 * @param {Uint8Array} d the `d` bytes of a `delta` frame
 * @param {Schema} schema the room's schema (parseSchema)
 * @param {number} hz the room's tick rate
 * @param {(n: number) => object|undefined} baseline a state this client rebuilt before, by tick
 * @returns {{n: number, st: number, keyframe: boolean, tables: number[][][]}}
 *   `tables[i]` are the rows of the schema's i-th table, each an array of
 *   quanta in column order (keyed tables by ascending id, slot tables in
 *   slot order)
 */
export function decodeDelta(d, schema, hz, baseline) {
  const r = new VarintReader(d);
  const n = r.u();
  const age = r.u();
  let base = null;
  if (age !== 0) {
    if (age >= n) throw new Error("delta: bad baseline age");
    base = baseline(n - age);
    if (!base) throw Object.assign(new Error(`delta: baseline ${n - age} not held`), { baseline: true });
  }
  const st = (base?.st ?? 0) + r.z();
  const tables = schema.tables.map((t, i) => {
    const b = base?.tables[i] ?? [];
    return t.slots ? decodeSlots(r, t, b) : decodeKeyed(r, t, b, age, hz);
  });
  if (r.i !== d.length) throw new Error("delta: trailing bytes");
  return { n, st, keyframe: age === 0, tables };
}

/**
 * Turns the `delta` frames of one connection back into snapshots, keeping
 * the newest rebuilt states as baselines.
 */
export class DeltaReceiver {
  /**
   * @param {number} hz the room's tick rate (welcome `hz`)
   * @param {Schema} [schema] the room's schema (the arena's)
   */
  constructor(hz, schema = ARENA_SCHEMA) {
    this.hz = hz;
    this.schema = schema;
    this.ring = [];
    this.keyframes = 0;
  }

  /**
   * @param {Uint8Array} d the `d` bytes of a `delta` frame
   * @returns {object} the quantized state (see decodeDelta); its `n` is what to acknowledge
   */
  apply(d) {
    const s = decodeDelta(d, this.schema, this.hz, (n) => this.ring.find((x) => x.n === n));
    if (s.keyframe) this.keyframes++;
    this.ring.push(s);
    if (this.ring.length > DELTA_KEEP) this.ring.shift();
    return s;
  }
}

/** A rebuilt state as a Snapshot: every value back in units (quanta * step). */
function deltaSnapshot(schema, s, ack, who) {
  const tables = {};
  schema.tables.forEach((t, i) => {
    tables[t.name] = s.tables[i].map((q) => {
      const o = { id: q[0] };
      for (let c = 1; c < t.columns.length; c++) o[t.columns[c]] = q[c] * t.step[c];
      return o;
    });
  });
  return makeSnapshot(schema, s.n, s.st, ack, tables, who);
}

/**
 * Keeps recent snapshots and answers where everything was at a given
 * server time, interpolating positions (x, y) between the two snapshots
 * around it. Renderers sample it a little in the past (about two snapshot
 * intervals) so that there is always a snapshot on each side.
 */
export class SnapshotBuffer {
  /** @param {number} [size] snapshots kept */
  constructor(size = 32) {
    this.size = size;
    /** @type {Snapshot[]} oldest first */
    this.snaps = [];
    /** Mean interval between snapshots, server ms. */
    this.interval = 100;
  }

  /** @param {Snapshot} snap a newer snapshot */
  push(snap) {
    const last = this.snaps.at(-1);
    if (last && snap.st <= last.st) {
      if (snap.n > last.n) this.snaps[this.snaps.length - 1] = snap;
      return;
    }
    if (last) this.interval += (Math.min(snap.st - last.st, 1000) - this.interval) / 8;
    this.snaps.push(snap);
    if (this.snaps.length > this.size) this.snaps.shift();
  }

  /** Forgets every snapshot (after a resync). */
  clear() {
    this.snaps = [];
  }

  /**
   * Positions of the players at server time `t`.
   * @param {number} t server time, Unix ms
   * @returns {Map<number, PlayerState>} interpolated states by id
   */
  sample(t) {
    return this.sampleTables(t).players;
  }

  /**
   * Every table at server time `t`: rows with x and y columns found in both
   * snapshots around `t` (same id) are interpolated, the others are taken
   * from the newer snapshot.
   * @param {number} t server time, Unix ms
   * @returns {{tables: Object<string, object[]>, players: Map<number, PlayerState>, playerTable: string|null}}
   */
  sampleTables(t) {
    const snaps = this.snaps;
    if (snaps.length === 0) return { tables: {}, players: new Map(), playerTable: null };
    let i = snaps.length - 1;
    while (i > 0 && snaps[i - 1].st > t) i--;
    const b = snaps[i];
    const a = i > 0 ? snaps[i - 1] : b;
    if (a === b || t >= b.st) return { tables: b.tables, players: b.players, playerTable: b.playerTable };
    const f = Math.max(0, Math.min(1, (t - a.st) / (b.st - a.st)));
    const tables = {};
    for (const [name, rows] of Object.entries(b.tables)) {
      const before = a.tables[name];
      if (!before?.length || rows.length === 0 || !("x" in rows[0] && "y" in rows[0])) {
        tables[name] = rows;
        continue;
      }
      const old = new Map(before.map((r) => [r.id, r]));
      tables[name] = rows.map((rb) => {
        const ra = old.get(rb.id);
        return ra ? { ...rb, x: ra.x + (rb.x - ra.x) * f, y: ra.y + (rb.y - ra.y) * f } : rb;
      });
    }
    const players = new Map((tables[b.playerTable] ?? []).map((r) => [r.id, r]));
    return { tables, players, playerTable: b.playerTable };
  }
}

/**
 * What a renderer draws: a moment of the game, interpolated.
 * @typedef {object} View
 * @property {string|null} mode the room's game mode
 * @property {Object<string, object[]>} tables every table's rows by name
 * @property {string|null} playerTable the table holding the players
 * @property {Map<number, PlayerState>} players the player table's rows by id
 * @property {{id: number, x: number, y: number}[]} orbs the arena's orbs
 * @property {number|null} me this player's id (null for a spectator)
 */

/**
 * Estimates the offset between the server's clock and this one.
 * `now() + offset` is the server's time.
 */
class Clock {
  /** @param {() => number} [now] this side's clock, ms (Date.now) */
  constructor(now = Date.now) {
    this.now = now;
    this.offset = null;
    this.samples = [];
  }

  /** Forgets the estimate (the server's time jumped: a replay was sought). */
  reset() {
    this.offset = null;
    this.samples = [];
  }

  /** A sample from a ping: the pong's `st` at round trip `rtt`. */
  fromPong(st, rtt) {
    this.samples.push({ offset: st + rtt / 2 - this.now(), rtt });
    if (this.samples.length > 8) this.samples.shift();
    // The sample with the shortest round trip has the least error.
    this.offset = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a)).offset;
  }

  /** A rough sample from a message stamped `st` by the server. */
  fromStamp(st) {
    const sample = st - this.now();
    if (this.offset === null || this.samples.length === 0) {
      // Messages arrive late, never early: the largest sample is the best
      // one, and the estimate drifts down slowly to follow clock changes.
      this.offset = this.offset === null ? sample : Math.max(sample, this.offset - 1);
    }
  }

  serverNow() {
    return this.now() + (this.offset ?? 0);
  }
}

/**
 * The time a replay is at, in ms of this side's clock scaled by the
 * replay's speed: it runs at `rate` times real time (0 while paused), so
 * that snapshots stamped with the recorded server time are interpolated
 * at the pace they are played.
 */
class PlaybackClock {
  constructor(rate = 1) {
    this.base = Date.now();
    this.at = 0;
    this.rate = rate;
  }

  now() {
    return this.at + (Date.now() - this.base) * this.rate;
  }

  /** Goes on at another rate from where it is. */
  setRate(rate) {
    this.at = this.now();
    this.base = Date.now();
    this.rate = rate;
  }
}

/** An input field's value: a finite number within [-1, 1], else 0. */
function clampField(v) {
  v = Number(v);
  return Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0;
}

function clampUnit(dx, dy) {
  dx = Number.isFinite(dx) ? Math.max(-1, Math.min(1, dx)) : 0;
  dy = Number.isFinite(dy) ? Math.max(-1, Math.min(1, dy)) : 0;
  const len = Math.hypot(dx, dy);
  return len > 1 ? [dx / len, dy / len] : [dx, dy];
}

/**
 * One step of the game's movement rule, the same as the server's: the
 * input vector is clamped to length 1 and the position to the arena.
 *
 * @param {{x: number, y: number}} pos
 * @param {number} dx
 * @param {number} dy
 * @param {{w: number, h: number, r: number, speed: number, hz: number}} world
 * @returns {{x: number, y: number}}
 */
export function stepPosition(pos, dx, dy, world) {
  [dx, dy] = clampUnit(dx, dy);
  const dt = 1 / world.hz;
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  return {
    x: clamp(pos.x + dx * world.speed * dt, world.r, world.w - world.r),
    y: clamp(pos.y + dy * world.speed * dt, world.r, world.h - world.r),
  };
}

/**
 * A chat or notice line.
 * @typedef {object} ChatEntry
 * @property {"chat"|"joined"|"left"|"info"} kind
 * @property {number} [id] player id
 * @property {string} [name]
 * @property {string} text
 * @property {number} st server time (Unix ms) or local time for notices
 * @property {number} [tick] in a replay, the tick the line came after
 */

/**
 * Connection state of a client.
 * @typedef {object} ConnectionState
 * @property {"idle"|"connecting"|"connected"|"reconnecting"|"paused"|"closed"} state
 *   ("paused": a replay that was paused)
 * @property {string} [reason] why it is reconnecting or closed
 * @property {number} [retryAt] Date.now() time of the next attempt, when reconnecting
 * @property {number} attempt reconnection attempts since the last success
 * @property {number} [code] the WebSocket close code, when closed by the server
 */

// ---- state over WebRTC -----------------------------------------------------
//
// Protocol 1.1, "State over WebRTC": the player offers a DataChannel
// labelled `state` (unordered, no retransmissions) on its own /ws/play;
// once it is open the server sends every state frame on it, where a lost
// frame is simply superseded by the next one instead of holding the later
// ones back as TCP does.

/** How long an offer may take to bring the first state frame over the channel, ms. */
const RTC_CONNECT_TIMEOUT = 15000;
/**
 * Silence on an open channel, while the WebSocket still brings messages,
 * after which state is taken to be back on the WebSocket, ms. The server
 * returns state to the WebSocket within 1 s of a failure.
 */
const RTC_SILENCE = 1000;
/** How long a channel must carry state before the re-offer backoff starts over, ms. */
const RTC_STABLE = 5000;
/** Inputs are not copied to a channel with more than this many bytes queued. */
const RTC_MAX_BUFFERED = 16 << 10;
/**
 * The most time between two messages the client sends on an open channel,
 * ms: the server takes a channel that brought nothing for a second as dead
 * and sends state on the WebSocket until something comes again, so an idle
 * player sends an `ack` of its newest tick this often.
 */
const RTC_KEEPALIVE = 200;

/**
 * The `state` DataChannel of one GameClient: offers it after each welcome,
 * trickles candidates both ways on the WebSocket, hands the binary frames it
 * receives to the client, and when it fails (closed, ICE disconnected or
 * failed, or silent while the WebSocket is not) tells the client that state
 * is on the WebSocket again and offers anew on a fresh RTCPeerConnection
 * after a backoff (1 s, 2 s, 4 s, ... up to 30 s, randomized). A server
 * that answers `error` `unsupported` is not offered to again on that
 * WebSocket session.
 */
class StateChannel {
  /**
   * @param {object} hooks what the channel needs from its client
   * @param {(m: object) => boolean} hooks.signal sends a message on the WebSocket
   * @param {(data: ArrayBuffer) => boolean} hooks.frame handles a binary frame; true for a state frame applied or superseded
   * @param {(transport: "udp"|"tcp", reason: string) => void} hooks.transport where state now arrives
   * @param {() => Promise<RTCIceServer[]>} hooks.iceServers the ICE servers to use
   * @param {() => number} hooks.wsHeard performance.now() of the newest WebSocket message
   * @param {() => Uint8Array|null} hooks.keepalive a message to send when the channel has been quiet
   * @param {{min: number, max: number}} backoff re-offer delays, ms
   */
  constructor(hooks, backoff) {
    this.hooks = hooks;
    this.backoff = backoff;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {RTCDataChannel|null} */
    this.dc = null;
    /** "off", "connecting", "open" (state arrives on it), "waiting" (to offer again), "refused". */
    this.state = "off";
    /** Why it is not open, for people. */
    this.reason = "";
    /** Re-offers since the last stable channel. */
    this.attempt = 0;
    /** Date.now() of the next offer while waiting. */
    this.retryAt = 0;
    /** Offers sent on this WebSocket whose answer has not come yet. */
    this.answersDue = 0;
    /** Whether this WebSocket's server has answered an offer. */
    this.answered = false;
    /** Remote candidates held until the remote description is set. */
    this.pending = [];
    this.offeredAt = 0;
    this.openedAt = 0;
    this.lastFrame = 0;
    this.lastSent = 0;
    this.timers = { retry: 0, watch: 0 };
    this.counts = { offers: 0, answers: 0, opens: 0, failures: 0, frames: 0, bytes: 0, sent: 0 };
    /** Never offer again: the server closed a session on an offer. */
    this.forGood = false;
    this.generation = 0;
  }

  /**
   * Starts over on a new WebSocket session (after its welcome): offers now,
   * unless a server refused for good. A server that declined with
   * `unsupported` is asked again on each new session (it may have been
   * restarted with WebRTC on), once.
   */
  restart() {
    this.stop();
    if (this.forGood) return;
    this.#set("off", "");
    this.answersDue = 0;
    this.answered = false;
    this.attempt = 0;
    clearInterval(this.timers.watch);
    this.timers.watch = setInterval(() => this.#watch(), RTC_KEEPALIVE / 2);
    this.offer();
  }

  /** Closes the channel and stops offering (the WebSocket ended, or the client). */
  stop() {
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.watch);
    this.timers.retry = this.timers.watch = 0;
    this.generation++;
    this.#closePC();
    if (this.state !== "refused") this.#set("off", "");
  }

  /** Whether an offer went out on this WebSocket and none was answered. */
  unanswered() {
    return this.answersDue > 0 && !this.answered;
  }

  /**
   * The server cannot take offers: state stays on the WebSocket, for this
   * session, or with `forGood` for the client's life (a server that closes
   * the session on an offer).
   */
  refuse(reason, forGood = false) {
    this.stop();
    this.#set("refused", reason);
    if (forGood) this.forGood = true;
  }

  #set(state, reason) {
    this.state = state;
    this.reason = reason;
  }

  #closePC() {
    const pc = this.pc;
    this.pc = null;
    this.dc = null;
    this.pending = [];
    if (pc) {
      try {
        pc.close();
      } catch {
        // already closed
      }
      if (this.openedAt) this.hooks.transport("tcp", this.reason || "channel closed");
    }
    this.openedAt = 0;
  }

  /** Makes a fresh RTCPeerConnection with the `state` channel and sends its offer. */
  async offer() {
    clearTimeout(this.timers.retry);
    this.timers.retry = 0;
    if (this.state === "refused") return;
    this.#closePC();
    const gen = ++this.generation;
    this.#set("connecting", "");
    this.offeredAt = performance.now();
    this.lastFrame = 0;
    let iceServers = [];
    try {
      iceServers = (await this.hooks.iceServers()) ?? [];
    } catch {
      // no ICE servers: host candidates only, which is what loopback and LANs need
    }
    if (gen !== this.generation) return;
    const pc = new RTCPeerConnection({ iceServers });
    const dc = pc.createDataChannel("state", { ordered: false, maxRetransmits: 0 });
    dc.binaryType = "arraybuffer";
    this.pc = pc;
    this.dc = dc;
    const current = () => this.pc === pc;
    let offerSent = false;
    const early = [];
    pc.onicecandidate = ({ candidate }) => {
      if (!current()) return;
      // An empty candidate, as some browsers send last, is the end too.
      const m = { t: "rtc-ice", candidate: candidate?.candidate ? candidate.toJSON() : null };
      if (offerSent) this.hooks.signal(m);
      else early.push(m);
    };
    pc.oniceconnectionstatechange = () => {
      if (current() && ["disconnected", "failed", "closed"].includes(pc.iceConnectionState)) this.fail(`ICE ${pc.iceConnectionState}`);
    };
    pc.onconnectionstatechange = () => {
      if (current() && (pc.connectionState === "failed" || pc.connectionState === "closed")) this.fail(`connection ${pc.connectionState}`);
    };
    dc.onopen = () => {
      if (!current()) return;
      this.counts.opens++;
    };
    dc.onclose = () => current() && this.fail("channel closed");
    dc.onmessage = (e) => {
      if (!current() || !(e.data instanceof ArrayBuffer)) return;
      this.counts.frames++;
      this.counts.bytes += e.data.byteLength;
      if (!this.hooks.frame(e.data)) return;
      this.lastFrame = performance.now();
      if (this.state !== "open") {
        this.#set("open", "");
        this.openedAt = this.lastFrame;
        this.hooks.transport("udp", "state channel open");
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
    } catch (err) {
      if (current()) this.fail(`offer: ${err.message}`);
      return;
    }
    if (!current()) return;
    if (!this.hooks.signal({ t: "rtc-offer", sdp: pc.localDescription.sdp })) {
      this.fail("WebSocket not open");
      return;
    }
    this.answersDue++;
    this.counts.offers++;
    offerSent = true;
    for (const m of early.splice(0)) this.hooks.signal(m);
  }

  /** Applies `rtc-answer`: only the answer to the newest offer counts. */
  async onAnswer(sdp) {
    if (this.answersDue > 0) this.answersDue--;
    this.answered = true;
    this.counts.answers++;
    const pc = this.pc;
    if (this.answersDue > 0 || !pc || pc.signalingState !== "have-local-offer" || typeof sdp !== "string") return;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
    } catch (err) {
      if (this.pc === pc) this.fail(`answer: ${err.message}`);
      return;
    }
    for (const c of this.pending.splice(0)) await this.#addCandidate(pc, c);
  }

  /** Applies `rtc-ice`: held until the remote description is set. */
  async onCandidate(candidate) {
    const pc = this.pc;
    if (!pc || !candidate || typeof candidate.candidate !== "string" || candidate.candidate === "") return; // end of candidates
    if (!pc.remoteDescription) {
      if (this.pending.length < 64) this.pending.push(candidate);
      return;
    }
    await this.#addCandidate(pc, candidate);
  }

  async #addCandidate(pc, c) {
    try {
      await pc.addIceCandidate(c);
    } catch {
      // a candidate of an abandoned offer (another ufrag): harmless
    }
  }

  /**
   * State is back on the WebSocket: the channel is closed and offered again
   * after the backoff.
   */
  fail(reason) {
    if (!this.pc || this.state === "refused") return;
    this.counts.failures++;
    this.#set("waiting", reason);
    this.generation++;
    this.#closePC();
    const delay = backoffDelay(this.attempt++, this.backoff);
    this.retryAt = Date.now() + delay;
    this.timers.retry = setTimeout(() => this.offer(), delay);
  }

  /** Sends an already encoded `input` or `ack` when the channel is open. */
  send(bytes) {
    const dc = this.dc;
    if (dc?.readyState !== "open" || dc.bufferedAmount > RTC_MAX_BUFFERED) return false;
    try {
      dc.send(bytes);
    } catch {
      return false;
    }
    this.lastSent = performance.now();
    this.counts.sent++;
    return true;
  }

  /**
   * Keeps the channel alive, checks for silence on it and for offers that
   * never got through.
   */
  #watch() {
    if (!this.pc) return;
    const now = performance.now();
    if (this.dc?.readyState === "open" && now - this.lastSent >= RTC_KEEPALIVE) {
      const m = this.hooks.keepalive();
      if (m) this.send(m);
    }
    if (this.state === "open") {
      if (now - this.lastFrame > RTC_SILENCE && this.hooks.wsHeard() > this.lastFrame) this.fail("no state on the channel for 1 s");
      else if (this.attempt > 0 && now - this.openedAt > RTC_STABLE) this.attempt = 0;
    } else if (this.state === "connecting" && now - this.offeredAt > RTC_CONNECT_TIMEOUT) {
      this.fail("no state on the channel in time");
    }
  }

  /** A plain summary. */
  info() {
    return {
      state: this.state,
      reason: this.reason,
      attempt: this.attempt,
      retryAt: this.state === "waiting" ? this.retryAt : null,
      ice: this.pc?.iceConnectionState ?? null,
      channel: this.dc?.readyState ?? null,
      ...this.counts,
    };
  }
}

/**
 * A player's connection to a room over /ws/play.
 *
 * Events (CustomEvent, message in `detail`): `state` (ConnectionState),
 * `welcome`, `snap` (Snapshot), `pong` ({rtt, jitter, offset}), `joined`,
 * `left`, `chat` (ChatEntry), `typing` ({id, name}), `servererror`
 * ({code, msg}), `moved` ({from, to, room}), `transport` ({transport,
 * reason}: state frames now arrive over "udp" or "tcp").
 *
 * State over WebRTC (protocol 1.1): after each welcome the client offers a
 * DataChannel labelled `state` (unordered, no retransmissions) on the
 * WebSocket, with the ICE servers of the welcome or of /api/ice, and
 * trickles candidates both ways. Once state frames arrive on it,
 * `stateTransport` is "udp" and a lost frame costs one tick instead of a
 * TCP retransmission that holds every later frame back. Frames from either
 * path go through the same handling (deltas, acks); one older than the
 * newest applied is dropped (`stats.stale`), since the channel does not keep
 * order. When the channel closes or fails, ICE goes disconnected or failed,
 * or no frame comes on it for a second while the WebSocket still brings
 * messages, `stateTransport` is "tcp" again (the server sends state on the
 * WebSocket within a second) and the client offers again on a fresh
 * RTCPeerConnection after 1 s, 2 s, 4 s, ... up to `maxBackoff`. A server
 * without WebRTC answers `error` `unsupported`, and is not offered to
 * again until the next session (after a reconnection); one that predates
 * WebRTC state closes with 4000 on the offer, and the client joins again
 * and never offers to it. While the channel is open, every `input` goes on both: the
 * copy on the channel is not held back by a lost TCP segment, the one on the
 * WebSocket cannot be lost, and the server applies whichever comes first
 * (by `seq`); so does every `ack`. The server takes a channel that brought
 * nothing for a second as dead, so while it is open the client sends on it
 * at least every 200 ms (an `ack` of its newest tick when nothing else goes
 * out). Chat and the rest stay on the WebSocket. `rtc: false` never
 * offers. `stateChannel.info()` summarizes the channel.
 *
 * Several nodes: when the server answers the `join` with `error` `moved`
 * (the room is hosted by another node of the cluster), the client joins
 * again at once at the node it names (`url` + /ws/play, http becoming ws
 * and https wss), for the room it names, with the same name, token, resume
 * token and options, and emits `moved`; the caller sees one join. It
 * follows one `moved` per join; a second is a failure (state "closed",
 * code 4307), as is a `moved` without a usable URL. From then on `node`
 * is that node and every reconnection (a resume after a drop) goes there.
 * `follow: false` turns this off: the `moved` ends the connection and is
 * reported as a `servererror`.
 *
 * Game modes (protocol 1.1): the `mode` option asks `room: "auto"` for a
 * room of that mode; after the welcome `mode` and `schema` say what the
 * room runs, snapshots carry every table of the schema (`snap.tables`), and
 * `input({...})` sends the mode's input fields.
 *
 * Own movement is predicted in modes whose inputs start with dx, dy and
 * whose player rows have x and y (arena, shooter): every `input` is applied
 * locally at once and kept until the server acknowledges its `seq`; each
 * snapshot resets the prediction to the server's position and replays the
 * inputs not yet applied. Other players should be drawn from `view()`,
 * which interpolates them about two ticks in the past.
 *
 * By default the client asks for delta snapshots (`delta: true`): the
 * server then sends each snapshot as a difference from one the client
 * acknowledged, a fraction of the bytes; the client rebuilds it and emits the
 * same `snap` event, every value within half its column's step of the
 * server's (1/128 unit for arena's coordinates).
 * Each rebuilt snapshot is acknowledged with the next `input` when one goes
 * out within a tick (as its `n`), else with an `ack` of its own.
 * `stats` counts what arrived, and the acknowledgements sent (`acks` on
 * their own, `inputAcks` inside inputs).
 */
export class GameClient extends EventTarget {
  /** `moved` answers followed in the join under way. */
  #hops = 0;

  /**
   * @param {object} options
   * @param {string} options.name display name, 1-24 characters
   * @param {string} [options.room] "auto" (default) or a room id
   * @param {string} [options.mode] with room "auto": the game mode of the
   *   room to join or make (the server's default, arena, when absent)
   * @param {string} [options.server] server origin (default: this page's)
   * @param {string} [options.token] JWT when the server requires one
   * @param {boolean} [options.reconnect] reconnect after a drop (true)
   * @param {number} [options.pingInterval] ms between pings (1000)
   * @param {number} [options.minBackoff] first reconnection delay, ms (1000)
   * @param {number} [options.maxBackoff] longest reconnection delay, ms (30000)
   * @param {boolean} [options.delta] ask for delta snapshots (true)
   * @param {boolean} [options.follow] follow a `moved` answer to the node
   *   hosting the room (true)
   * @param {boolean} [options.rtc] take state frames over a WebRTC
   *   DataChannel when the server offers it (true); false keeps them on the
   *   WebSocket
   */
  constructor({ name, room = "auto", mode, server, token, reconnect = true, pingInterval = 1000, minBackoff = 1000, maxBackoff = 30000, delta = true, follow = true, rtc = true }) {
    super();
    this.name = name;
    /** Room id; "auto" until the welcome names the room. */
    this.room = room;
    /** The server asked first (the `server` option; undefined: this page's origin). */
    this.server = server;
    /**
     * Base URL of the node this connection is on, or is connecting to: the
     * server's origin, or after a `moved` the node hosting the room
     * (e.g. "http://10.0.0.2:8080"). Reconnections go here.
     */
    this.node = httpBase(server).origin;
    /** `moved` answers followed since the client was made. */
    this.moves = 0;
    this.token = token;
    this.options = { reconnect, pingInterval, minBackoff, maxBackoff, delta, follow, mode, rtc };
    /** The room's game mode: the one asked for until the welcome says. */
    this.mode = mode ?? null;
    /** The room's tables and input fields (see parseSchema), null before the first welcome. @type {Schema|null} */
    this.schema = null;
    /** The table holding the players' rows, once this player's row was seen in it. */
    this.playerTable = null;
    /** The input fields last sent, by name. */
    this.lastInput = {};
    /** Rebuilds delta snapshots; one per connection, made at its welcome. */
    this.deltaReceiver = null;
    /**
     * What arrived: frames and their payload bytes, snapshots (full or
     * rebuilt), delta frames and keyframes among them.
     */
    this.stats = { frames: 0, bytes: 0, snaps: 0, deltas: 0, keyframes: 0, acks: 0, inputAcks: 0, rtcFrames: 0, rtcBytes: 0, stale: 0 };
    /**
     * Where state frames arrive now: "udp" (the WebRTC DataChannel) or
     * "tcp" (the WebSocket). A `transport` event tells each change.
     * @type {"udp"|"tcp"}
     */
    this.stateTransport = "tcp";
    /** The tick of the newest state frame applied on this connection (older ones are dropped). */
    this.stateTick = 0;
    /** performance.now() of the newest WebSocket message. */
    this.wsHeard = 0;
    /** ICE servers from the welcome, when it lists them (else /api/ice is asked). */
    this.iceServers = null;
    /** The state DataChannel, null when off (option `rtc: false`, or no WebRTC in this browser). */
    this.stateChannel =
      rtc && typeof RTCPeerConnection === "function"
        ? new StateChannel(
            {
              signal: (m) => this.#send(m),
              frame: (data) => this.#onChannelFrame(data),
              transport: (t, reason) => this.#setStateTransport(t, reason),
              iceServers: async () => this.iceServers ?? (await fetchICEServers({ server: this.node, token: this.token })).iceServers,
              wsHeard: () => this.wsHeard,
              keepalive: () => (this.stateTick > 0 ? encoder.encode({ t: "ack", n: this.stateTick }) : null),
            },
            { min: minBackoff, max: maxBackoff },
          )
        : null;
    /** Delta mode: the tick to acknowledge, sent with the next input or within a tick. */
    this.ackDue = 0;
    /** This player's entity id, null before the first welcome. */
    this.id = null;
    /** The mode's field: {w, h, r, speed, hz}, null before the first welcome. */
    this.world = null;
    /** @type {ConnectionState} */
    this.connection = { state: "idle", attempt: 0 };
    /** Player names by id. @type {Map<number, string>} */
    this.names = new Map();
    /** The newest snapshot. @type {Snapshot|null} */
    this.latest = null;
    /** Recent snapshots for interpolation. */
    this.buffer = new SnapshotBuffer();
    /** Own predicted position, null before the first snapshot. */
    this.predicted = null;
    /** Chat lines and join/leave notices, oldest first. @type {ChatEntry[]} */
    this.chatLog = [];
    /** Round trip of the last ping, ms. */
    this.ping = null;
    /** Smoothed variation of the round trip, ms. */
    this.jitter = null;
    /** Ids of players typing, with the Date.now() time their notice ends. */
    this.typingUntil = new Map();
    this.clock = new Clock();
    /** Inputs sent and not yet acknowledged. */
    this.pending = [];
    this.seq = 0;
    this.resumeToken = null;
    this.ws = null;
    this.timers = { ping: 0, retry: 0, ack: 0 };
    this.lastTypingSent = 0;
    /** Why the page ended the session ("left", "closed"), false while it has not. */
    this.closing = false;
  }

  /** Opens the connection to `node`; `join()` calls it for you. */
  connect() {
    if (this.ws || this.closing) return;
    this.#setConnection({ state: this.connection.attempt > 0 ? "reconnecting" : "connecting", reason: this.connection.reason });
    const ws = new WebSocket(playURL(this.node));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let serverError = null;
    let welcomed = false;
    ws.onopen = () => {
      this.deltaReceiver = null;
      this.#send({
        t: "join",
        name: this.name,
        room: this.room,
        token: this.token,
        resume: this.resumeToken ?? undefined,
        caps: this.options.delta ? ["delta"] : undefined,
        mode: this.room === "auto" ? this.options.mode || undefined : undefined,
      });
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") return;
      this.wsHeard = performance.now();
      this.stats.frames++;
      this.stats.bytes += e.data.byteLength;
      let m;
      try {
        m = decoder.decode(new Uint8Array(e.data));
      } catch {
        return; // not msgpack: ignore, as with unknown types
      }
      if (m?.t === "welcome") welcomed = true;
      if (m?.t === "error") {
        serverError = m;
        // Handled when the server closes: followed, or reported then.
        if (m.code === "moved" && !welcomed) return;
      }
      this.#handle(m);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.timers.ping);
      clearTimeout(this.timers.ack);
      this.timers.ack = 0;
      this.ackDue = 0;
      // A server that predates WebRTC state closes with 4000 on the
      // unknown `rtc-offer`: play on over the WebSocket alone.
      const noRTC = e.code === 4000 && this.stateChannel?.unanswered();
      this.stateChannel?.stop();
      if (noRTC) this.stateChannel.refuse("the server does not take rtc-offer", true);
      const reason = serverError?.msg || e.reason || CLOSE_REASONS[e.code] || `code ${e.code}`;
      if (this.closing) {
        this.#setConnection({ state: "closed", reason: this.closing, attempt: 0 });
      } else if (noRTC && this.options.reconnect) {
        this.#scheduleReconnect("the server does not take WebRTC state");
      } else if (!welcomed && serverError?.code === "moved") {
        this.#onMoved(serverError);
      } else if (FATAL_CLOSE.has(e.code) || e.code === 4307 || !this.options.reconnect) {
        this.#setConnection({ state: "closed", reason, code: e.code, attempt: 0 });
      } else {
        this.#scheduleReconnect(reason);
      }
    };
  }

  /** Follows a `moved` answer to the join, or ends the connection. */
  #onMoved(m) {
    const to = nodeBase(m.url);
    const room = typeof m.room === "string" && m.room !== "" ? m.room : this.room;
    let failure = null;
    if (!this.options.follow) failure = m.msg || CLOSE_REASONS[4307];
    else if (!to) failure = `moved to an unusable url ${JSON.stringify(m.url ?? "")}`;
    else if (this.#hops >= MAX_MOVES) failure = `moved again (to ${to}), not followed`;
    if (failure) {
      this.#emit("servererror", { code: m.code, msg: m.msg, url: m.url, room: m.room });
      this.#setConnection({ state: "closed", reason: failure, code: 4307, attempt: 0 });
      return;
    }
    const from = this.node;
    this.#hops++;
    this.moves++;
    this.node = to;
    this.room = room;
    this.#emit("moved", { from, to, room });
    this.connect();
  }

  #scheduleReconnect(reason) {
    this.#hops = 0; // the next attempt is a new join
    const attempt = this.connection.attempt;
    const delay = backoffDelay(attempt, { min: this.options.minBackoff, max: this.options.maxBackoff });
    this.#setConnection({ state: "reconnecting", reason, retryAt: Date.now() + delay, attempt: attempt + 1 });
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  #setConnection(c) {
    this.connection = { attempt: this.connection.attempt, ...c };
    this.#emit("state", this.connection);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #send(m) {
    return this.#sendBytes(encoder.encode(m));
  }

  #sendBytes(b) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(b);
    return true;
  }

  #setStateTransport(t, reason) {
    if (this.stateTransport === t) return;
    this.stateTransport = t;
    this.#emit("transport", { transport: t, reason });
  }

  /**
   * A binary message on the state channel: a `snap` or `delta` goes
   * through the same handling as on the WebSocket. Reports whether it was a
   * state frame.
   */
  #onChannelFrame(data) {
    let m;
    try {
      m = decoder.decode(new Uint8Array(data));
    } catch {
      return false;
    }
    if (m?.t !== "snap" && m?.t !== "delta") return false;
    this.stats.frames++;
    this.stats.bytes += data.byteLength;
    this.stats.rtcFrames++;
    this.stats.rtcBytes += data.byteLength;
    this.#handle(m);
    return true;
  }

  #handle(m) {
    switch (m?.t) {
      case "welcome":
        return this.#onWelcome(m);
      case "snap":
        return this.#onSnapshot(decodeSnap(m, this.schema ?? ARENA_SCHEMA, this.#who()));
      case "delta":
        return this.#onDelta(m);
      case "pong": {
        const rtt = performance.now() - m.ts;
        if (this.ping !== null) this.jitter += (Math.abs(rtt - this.ping) - this.jitter) / 16;
        else this.jitter = 0;
        this.ping = rtt;
        this.clock.fromPong(m.st, rtt);
        return this.#emit("pong", { rtt, jitter: this.jitter, offset: this.clock.offset });
      }
      case "joined":
        this.names.set(m.id, m.name);
        this.#log({ kind: "joined", id: m.id, name: m.name, text: `${m.name} joined`, st: Date.now() });
        return this.#emit("joined", m);
      case "left": {
        const name = this.names.get(m.id) ?? `#${m.id}`;
        this.names.delete(m.id);
        this.typingUntil.delete(m.id);
        this.#log({ kind: "left", id: m.id, name, text: `${name} left (${m.reason})`, st: Date.now() });
        return this.#emit("left", { ...m, name });
      }
      case "chat":
        this.typingUntil.delete(m.id);
        this.#log({ kind: "chat", id: m.id, name: m.name, text: m.text, st: m.st });
        return;
      case "typing":
        this.typingUntil.set(m.id, Date.now() + 3000);
        return this.#emit("typing", { id: m.id, name: this.names.get(m.id) ?? `#${m.id}` });
      case "rtc-answer":
        return this.stateChannel?.onAnswer(m.sdp);
      case "rtc-ice":
        return this.stateChannel?.onCandidate(m.candidate);
      case "error":
        if (m.code === "unsupported" && this.stateChannel?.answersDue > 0) {
          // No WebRTC on this server: state stays on the WebSocket.
          return this.stateChannel.refuse(m.msg || "unsupported");
        }
        if (m.code === "bad-message" && this.stateChannel?.unanswered() && String(m.msg).includes("rtc-offer")) {
          return; // a server that predates WebRTC state; its close is handled
        }
        return this.#emit("servererror", { code: m.code, msg: m.msg });
      default:
      // unknown types are ignored
    }
  }

  #onWelcome(m) {
    const resumed = this.id !== null && this.id === m.id;
    this.id = m.id;
    this.room = m.room;
    this.world = { w: m.w, h: m.h, r: m.r, speed: m.speed, hz: m.hz };
    this.mode = typeof m.mode === "string" && m.mode ? m.mode : "arena";
    this.schema = parseSchema(m.schema, this.mode);
    this.playerTable = null;
    this.resumeToken = m.resume;
    this.#hops = 0;
    this.names = new Map((m.players ?? []).map((p) => [p.id, p.name]));
    this.pending = [];
    this.buffer.clear();
    if (!resumed) this.predicted = null;
    this.clock.fromStamp(m.st);
    if (this.options.delta) this.deltaReceiver = new DeltaReceiver(m.hz, this.schema);
    this.stateTick = 0;
    this.iceServers = Array.isArray(m.iceServers) ? m.iceServers : null;
    this.#setConnection({ state: "connected", attempt: 0, resumed });
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => this.#sendPing(), this.options.pingInterval);
    this.#sendPing();
    this.#emit("welcome", m);
    this.stateChannel?.restart();
  }

  #onDelta(m) {
    if (!this.deltaReceiver || !(m.d instanceof Uint8Array)) return;
    let s;
    try {
      s = this.deltaReceiver.apply(m.d);
    } catch {
      // A frame this client cannot rebuild: ask for a keyframe.
      this.#send({ t: "ack", n: 0 });
      this.stats.acks++;
      return;
    }
    if (s.n <= this.stateTick) {
      this.stats.stale++; // overtaken on the unordered channel
      return;
    }
    this.#ackLater(s.n);
    this.stats.deltas++;
    if (s.keyframe) this.stats.keyframes++;
    this.#onSnapshot(deltaSnapshot(this.deltaReceiver.schema, s, m.ack, this.#who()));
  }

  /**
   * Acknowledges a rebuilt delta snapshot: with the next input when one goes
   * out within a tick (an input may carry `n`), else on its own.
   */
  #ackLater(n) {
    this.ackDue = n;
    if (this.timers.ack) return;
    this.timers.ack = setTimeout(() => {
      this.timers.ack = 0;
      const b = this.ackDue ? encoder.encode({ t: "ack", n: this.ackDue }) : null;
      if (b && this.#sendBytes(b)) {
        this.stats.acks++;
        this.stateChannel?.send(b); // it may come sooner this way
      }
      this.ackDue = 0;
    }, 1250 / (this.world?.hz || 20)); // a tick, and some timer jitter
  }

  /** Who the players are, for building snapshots. */
  #who() {
    const ids = new Set(this.names.keys());
    if (this.id !== null) ids.add(this.id);
    return { names: this.names, ids, known: this.playerTable };
  }

  /**
   * Whether own movement is predicted: the mode's inputs start with dx, dy
   * and this player's row has x and y.
   */
  #predicts(me) {
    const input = this.schema?.input ?? ARENA_SCHEMA.input;
    return input[0] === "dx" && input[1] === "dy" && typeof me?.x === "number" && typeof me?.y === "number";
  }

  #onSnapshot(snap) {
    if (snap.n <= this.stateTick) {
      this.stats.stale++; // overtaken on the unordered channel
      return;
    }
    this.stateTick = snap.n;
    this.stats.snaps++;
    this.latest = snap;
    this.buffer.push(snap);
    this.clock.fromStamp(snap.st);
    const me = snap.players.get(this.id);
    if (me) this.playerTable = snap.playerTable; // found by this player's id
    const ack = snap.ack ?? 0;
    this.pending = this.pending.filter((i) => i.seq > ack);
    if (this.#predicts(me) && this.world) {
      let pos = { x: me.x, y: me.y };
      for (const i of this.pending) pos = stepPosition(pos, i.values.dx, i.values.dy, this.world);
      this.predicted = pos;
    }
    this.#emit("snap", snap);
  }

  #log(entry) {
    this.chatLog.push(entry);
    if (this.chatLog.length > 200) this.chatLog.shift();
    this.#emit("chat", entry);
  }

  #sendPing() {
    this.#send({ t: "ping", ts: performance.now() });
  }

  /**
   * Sends the mode's input fields and applies the movement (dx, dy) to the
   * predicted position. Call it once per tick (at `world.hz`) while the
   * player acts; the server keeps applying the newest input, so send zeros
   * to stop.
   *
   * `values` maps field names to numbers in [-1, 1] (buttons 0 or 1), e.g.
   * `{dx: 1, dy: 0}` in arena, `{dx, dy, ax, ay, fire}` in shooter. Every
   * field of the mode is sent, a missing one as 0; names the mode does not
   * declare are left out (the server refuses them). A leading (dx, dy) is
   * clamped to length 1. `input(dx, dy)` with two numbers is the same as
   * `input({dx, dy})`.
   *
   * @param {Object<string, number>|number} values the fields, or dx
   * @param {number} [dy] with a number as first argument
   * @returns {number} the input's seq, or 0 when not connected
   */
  input(values, dy) {
    if (typeof values !== "object" || values === null) values = { dx: values, dy };
    if (this.connection.state !== "connected") return 0;
    const names = this.schema?.input ?? ARENA_SCHEMA.input;
    const v = {};
    for (const name of names) v[name] = clampField(values[name]);
    if (names[0] === "dx" && names[1] === "dy") [v.dx, v.dy] = clampUnit(v.dx, v.dy);
    const seq = ++this.seq;
    const msg = { t: "input", seq, ...v };
    if (this.ackDue) msg.n = this.ackDue; // the pending delta acknowledgement rides along
    const bytes = encoder.encode(msg);
    if (!this.#sendBytes(bytes)) return 0;
    // A copy on the state channel, when it carries state, is not held back
    // behind a lost TCP segment; the server applies whichever copy comes
    // first and drops the other by its seq.
    this.stateChannel?.send(bytes);
    if (msg.n) {
      this.ackDue = 0;
      this.stats.inputAcks++;
      clearTimeout(this.timers.ack); // the next snapshot gets a full window
      this.timers.ack = 0;
    }
    this.lastInput = v;
    this.pending.push({ seq, values: v });
    if (this.pending.length > 4 * this.world.hz) this.pending.shift();
    if (this.predicted && names[0] === "dx" && names[1] === "dy") this.predicted = stepPosition(this.predicted, v.dx, v.dy, this.world);
    return seq;
  }

  /**
   * Sends a movement (dx, dy), keeping the other input fields as last sent
   * (aim, buttons).
   * @param {number} dx in [-1, 1]
   * @param {number} dy in [-1, 1]
   * @returns {number} the input's seq, or 0 when not connected
   */
  move(dx, dy) {
    return this.input({ ...this.lastInput, dx, dy });
  }

  /**
   * Sends a chat line to the room; it comes back as a `chat` event.
   * @param {string} text 1-280 characters
   * @returns {boolean} whether it was sent
   */
  chat(text) {
    text = String(text).trim().slice(0, 280);
    if (!text) return false;
    this.lastTypingSent = 0;
    return this.#send({ t: "chat", text });
  }

  /**
   * Tells the room this player is typing. Call it on every keystroke; it
   * sends at most one `typing` every 2 s.
   * @returns {boolean} whether a message was sent
   */
  typing() {
    const now = Date.now();
    if (now - this.lastTypingSent < 2000) return false;
    if (!this.#send({ t: "typing" })) return false;
    this.lastTypingSent = now;
    return true;
  }

  /**
   * Names of the other players typing now.
   * @returns {string[]}
   */
  typers() {
    const now = Date.now();
    const out = [];
    for (const [id, until] of this.typingUntil) {
      if (until > now) out.push(this.names.get(id) ?? `#${id}`);
      else this.typingUntil.delete(id);
    }
    return out;
  }

  /** The server's clock now, Unix ms (estimated). */
  serverNow() {
    return this.clock.serverNow();
  }

  /** The estimated offset of the server's clock from this one, ms. */
  get clockOffset() {
    return this.clock.offset;
  }

  /**
   * What to draw now: every table interpolated about two ticks in the past
   * (see SnapshotBuffer.sampleTables), this player at its predicted
   * position, and the newest orbs.
   * @returns {View}
   */
  view() {
    const hz = this.world?.hz ?? 30;
    const s = this.buffer.sampleTables(this.serverNow() - 2000 / hz);
    const players = new Map(s.players);
    const tables = { ...s.tables };
    const me = this.latest?.players.get(this.id);
    if (me && this.predicted) {
      const mine = { ...me, ...this.predicted };
      players.set(this.id, mine);
      if (tables[s.playerTable]) tables[s.playerTable] = tables[s.playerTable].map((r) => (r.id === this.id ? mine : r));
    }
    return { mode: this.mode, tables, playerTable: s.playerTable, players, orbs: this.latest?.orbs ?? [], me: this.id };
  }

  /** Leaves the room (the seat is given up) and closes the connection. */
  leave() {
    this.closing = "left";
    clearTimeout(this.timers.retry);
    this.stateChannel?.stop();
    if (!this.#send({ t: "leave" })) {
      this.ws?.close();
      this.#setConnection({ state: "closed", reason: "left", attempt: 0 });
    }
  }

  /**
   * Drops the connection without leaving: the server holds the seat for a
   * grace period. No reconnection follows.
   */
  close() {
    this.closing = "closed";
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    this.stateChannel?.stop();
    this.ws?.close();
    if (!this.ws) this.#setConnection({ state: "closed", reason: "closed", attempt: 0 });
  }
}

/**
 * Joins a room and returns the connecting client. With several nodes, a
 * room hosted by another node is joined there by itself (the server's
 * `moved` answer is followed once); the client's `node` says where it
 * plays.
 *
 * @param {ConstructorParameters<typeof GameClient>[0]} options
 * @returns {GameClient}
 */
export function join(options) {
  const c = new GameClient(options);
  c.connect();
  return c;
}

const FEED_EVENTS = ["room", "snap", "joined", "left", "chat", "closed"];

/** The longest `delay` of a live feed, s (protocol 1.1). */
export const MAX_DELAY = 600;

/** The speeds a replay may be played at (protocol 1.1): 0.25 to 16. */
export const REPLAY_SPEEDS = { min: 0.25, max: 16 };

/** A replay speed within REPLAY_SPEEDS; 1 for anything not a number. */
function replaySpeed(x) {
  x = Number(x);
  return Number.isFinite(x) ? Math.min(REPLAY_SPEEDS.max, Math.max(REPLAY_SPEEDS.min, x)) : 1;
}

/**
 * A read-only view of a room through its spectator feed: Server-Sent
 * Events, or HTTP long-poll. With transport "auto" it uses SSE and falls
 * back to long-poll by itself when SSE fails; either way it resumes from
 * the last event id it saw, so no chat or join/leave is lost or repeated.
 *
 * With `delay` (protocol 1.1) the feed is the room as it was that many
 * seconds ago, with the live feed's events and ids.
 *
 * With `replay` (protocol 1.1; see `watchReplay`) it plays the room's
 * recording over SSE instead: `pause()`, `play()`, `seek(tick)` and
 * `setSpeed(x)` drive it, and `replay` holds where it is.
 *
 * Events: `state` (ConnectionState, state "connected" while live,
 * "paused" while a replay is paused), `transport` ("sse" | "poll"),
 * `room`, `snap` (Snapshot), `joined`, `left`, `chat` (ChatEntry),
 * `closed` ({reason}; a replay's end is "end-of-replay"), and for replays
 * `seek` ({tick}: the chat log was rebuilt).
 *
 * The `room` event names the room's game mode and schema (`mode`,
 * `schema`; arena when absent); snapshots carry every table of it.
 */
export class Spectator extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.room room id
   * @param {"auto"|"sse"|"poll"} [options.transport] (auto)
   * @param {string} [options.server] server origin (default: this page's)
   * @param {string} [options.token] JWT when the server requires one
   * @param {number} [options.pollTimeout] long-poll wait, s (25)
   * @param {number} [options.sseFailures] SSE errors in a row before "auto"
   *   falls back to long-poll (3)
   * @param {number} [options.delay] the live feed delayed by this many
   *   seconds (0..MAX_DELAY; 0: live)
   * @param {{from?: number, speed?: number, paused?: boolean}} [options.replay]
   *   play the room's recording from tick `from` (0: the start) at `speed`,
   *   paused (showing the first tick only) when `paused`
   */
  constructor({ room, transport = "auto", server, token, pollTimeout = 25, sseFailures = 3, delay = 0, replay = null }) {
    super();
    this.room = room;
    /** The transport asked for: "auto", "sse" or "poll". */
    this.transportMode = replay ? "sse" : transport;
    this.server = server;
    this.token = token;
    this.pollTimeout = pollTimeout;
    this.maxSSEFailures = sseFailures;
    /** Transport in use: "sse" or "poll". */
    this.transport = this.transportMode === "poll" ? "poll" : "sse";
    /** Seconds the live feed is behind the room (0: live). */
    this.delay = !replay && Number.isFinite(delay) && delay > 0 ? Math.min(MAX_DELAY, delay) : 0;
    /**
     * Where a replay is, null for a live feed: `speed`, `paused`, `ended`
     * (the `closed` event came), `from` (the tick asked last), `firstTick`
     * and `lastTick` (the first and newest ticks seen, null before),
     * `endTick` (the last tick, once the end was reached), `seek`
     * ({asked, landed}: the newest seek and the tick of its first
     * snapshot, null until it came).
     */
    this.replay = replay && {
      speed: replaySpeed(replay.speed ?? 1),
      paused: Boolean(replay.paused),
      ended: false,
      from: Math.max(0, Math.floor(Number(replay.from) || 0)),
      firstTick: null,
      lastTick: null,
      endTick: null,
      seek: null,
    };
    // For replays: every chat line and notice seen, by event id, with the
    // tick it came after; and the stretches of ticks played ([from, to]),
    // to tell whether the chat before a tick is known.
    this.history = new Map();
    this.shown = new Set(); // the ids of the history's lines in chatLog
    this.played = [];
    this.stretch = null;
    this.whole = false; // this stream is the whole recording (its room event is id 0)
    /** Id of the last event received, null before the first. */
    this.lastEventId = null;
    /** @type {ConnectionState} */
    this.connection = { state: "idle", attempt: 0 };
    /** Room info from the `room` event: {id, hz, w, h, mode, schema}. */
    this.info = null;
    /** The room's game mode, null before the `room` event. */
    this.mode = null;
    /** The room's tables and input fields (see parseSchema). @type {Schema|null} */
    this.schema = null;
    /** The table holding the players' rows, once a known player was seen in it. */
    this.playerTable = null;
    /** The field for renderers: {w, h, r, hz}. */
    this.world = null;
    /** @type {Map<number, string>} */
    this.names = new Map();
    /** @type {Snapshot|null} */
    this.latest = null;
    this.buffer = new SnapshotBuffer();
    /** @type {ChatEntry[]} */
    this.chatLog = [];
    /** Events received, by type. */
    this.counts = Object.fromEntries(FEED_EVENTS.map((t) => [t, 0]));
    /** Times the transport changed or a stream was reopened. */
    this.reconnects = 0;
    // A replay's snapshots are stamped with the recorded time: they are
    // interpolated on a clock that runs at the replay's speed.
    this.playback = this.replay ? new PlaybackClock(this.replay.paused ? 0 : this.replay.speed) : null;
    this.clock = new Clock(this.playback ? () => this.playback.now() : undefined);
    this.es = null;
    this.abort = null;
    this.probe = null;
    this.sseErrors = 0;
    this.stopped = false;
    this.retry = 0;
  }

  /** Starts receiving; `spectate()` and `watchReplay()` call it for you. */
  start() {
    if (this.transport === "sse") this.#openSSE();
    else this.#pollLoop();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setConnection(c) {
    this.connection = { attempt: this.connection.attempt, ...c };
    this.#emit("state", this.connection);
  }

  #feedURL(kind) {
    const u = new URL(`/rooms/${encodeURIComponent(this.room)}/${kind}`, httpBase(this.server));
    if (this.token) u.searchParams.set("token", this.token);
    if (this.delay > 0) u.searchParams.set("delay", String(this.delay));
    return u;
  }

  /** The SSE stream to open: the live feed, or the replay from where it is. */
  #streamURL() {
    const r = this.replay;
    const u = this.#feedURL(r ? "replay" : "events");
    if (r) u.searchParams.set("speed", String(r.speed));
    if (this.lastEventId !== null) u.searchParams.set("lastEventId", String(this.lastEventId));
    else if (r?.from > 0) u.searchParams.set("from", String(r.from));
    return u;
  }

  #openSSE() {
    const u = this.#streamURL();
    this.#setConnection({ state: this.lastEventId === null ? "connecting" : "reconnecting", reason: this.connection.reason });
    const es = new EventSource(u);
    this.es = es;
    for (const type of FEED_EVENTS) {
      es.addEventListener(type, (e) => {
        if (this.es !== es) return;
        this.sseErrors = 0;
        this.#onEvent(Number(e.lastEventId), type, JSON.parse(e.data));
      });
    }
    es.onopen = () => {
      if (this.es !== es) return;
      this.#setConnection({ state: "connected", attempt: 0 });
    };
    es.onerror = () => {
      if (this.es !== es) return;
      this.sseErrors++;
      const closed = es.readyState === EventSource.CLOSED;
      if (this.replay && closed) {
        es.close();
        this.es = null;
        this.#replayFailed(u);
      } else if (this.transportMode === "auto" && (closed || this.sseErrors >= this.maxSSEFailures)) {
        // An EventSource that got an error status on reconnect stays closed
        // for good; long-poll carries the same events and ids.
        es.close();
        this.es = null;
        this.reconnects++;
        this.transport = "poll";
        this.#emit("transport", "poll");
        this.#pollLoop();
      } else if (closed) {
        es.close();
        this.es = null;
        const delay = backoffDelay(this.retry++);
        this.#setConnection({ state: "reconnecting", reason: "stream failed", retryAt: Date.now() + delay });
        setTimeout(() => !this.stopped && this.#openSSE(), delay);
      } else {
        // The browser reconnects by itself with Last-Event-ID.
        this.reconnects++;
        this.#setConnection({ state: "reconnecting", reason: "stream dropped" });
      }
    };
  }

  /**
   * A replay stream that EventSource gave up on: an error status (which
   * EventSource does not tell) ends the replay, anything else is retried
   * from the last event.
   */
  async #replayFailed(u) {
    const probe = new AbortController();
    this.probe = probe;
    let status = 0;
    let reason = "";
    try {
      const res = await fetch(u, { cache: "no-store", signal: probe.signal });
      status = res.status;
      if (!res.ok) reason = await readError(res);
    } catch {
      // the server is unreachable: retried below
    } finally {
      probe.abort();
    }
    if (this.probe !== probe || this.stopped) return; // sought or closed meanwhile
    this.probe = null;
    if (status === 404) return this.#finish("replay not found");
    if (status >= 400 && status < 500) return this.#finish(reason);
    this.reconnects++;
    const delay = backoffDelay(this.retry++);
    this.#setConnection({ state: "reconnecting", reason: status ? `HTTP ${status}` : "stream failed", retryAt: Date.now() + delay });
    this.probe = new AbortController(); // a seek or pause meanwhile cancels the retry
    const retry = this.probe;
    setTimeout(() => {
      if (this.probe !== retry || this.stopped) return;
      this.probe = null;
      this.#openSSE();
    }, delay);
  }

  async #pollLoop() {
    this.abort = new AbortController();
    const signal = this.abort.signal;
    let attempt = 0;
    while (!this.stopped && this.transport === "poll") {
      const u = this.#feedURL("poll");
      if (this.lastEventId !== null) u.searchParams.set("after", String(this.lastEventId));
      u.searchParams.set("timeout", String(this.pollTimeout));
      try {
        const res = await fetch(u, { cache: "no-store", signal });
        if (res.status === 404 || res.status === 410) {
          this.#finish(res.status === 404 ? "room not found" : "room has ended");
          return;
        }
        if (!res.ok) throw new Error(await readError(res));
        const body = await res.json();
        if (this.connection.state !== "connected") this.#setConnection({ state: "connected", attempt: 0 });
        attempt = 0;
        for (const ev of body.events ?? []) this.#onEvent(ev.id, ev.type, ev.data);
        if (Number.isInteger(body.last) && (this.lastEventId === null || body.last > this.lastEventId)) {
          this.lastEventId = body.last;
        }
      } catch (err) {
        if (this.stopped) return;
        const delay = backoffDelay(attempt++);
        this.reconnects++;
        this.#setConnection({ state: "reconnecting", reason: String(err?.message ?? err), retryAt: Date.now() + delay, attempt });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  #onEvent(id, type, data) {
    if (this.lastEventId !== null && id <= this.lastEventId && type !== "room") return; // seen already
    if (Number.isInteger(id)) this.lastEventId = id;
    this.counts[type] = (this.counts[type] ?? 0) + 1;
    switch (type) {
      case "room":
        this.info = data;
        this.mode = typeof data.mode === "string" && data.mode ? data.mode : "arena";
        this.schema = parseSchema(data.schema, this.mode);
        this.playerTable = null;
        this.world = { w: data.w, h: data.h, r: data.r ?? 16, hz: data.hz };
        this.names = new Map((data.players ?? []).map((p) => [p.id, p.name]));
        this.buffer.clear();
        if (this.replay) {
          this.clock.reset(); // the recorded time starts over
          this.whole = id === 0;
        }
        return this.#emit("room", data);
      case "snap": {
        const ids = new Set(this.names.keys());
        const snap = decodeSnap(data, this.schema ?? ARENA_SCHEMA, { names: this.names, ids, known: this.playerTable });
        if ([...snap.players.keys()].some((id) => ids.has(id))) this.playerTable = snap.playerTable;
        this.latest = snap;
        this.buffer.push(snap);
        this.clock.fromStamp(snap.st);
        if (this.replay) this.#played(snap.n);
        return this.#emit("snap", snap);
      }
      case "joined":
        this.names.set(data.id, data.name);
        this.#log(id, { kind: "joined", id: data.id, name: data.name, text: `${data.name} joined`, st: Date.now() });
        return this.#emit("joined", data);
      case "left": {
        const name = this.names.get(data.id) ?? `#${data.id}`;
        this.names.delete(data.id);
        this.#log(id, { kind: "left", id: data.id, name, text: `${name} left (${data.reason})`, st: Date.now() });
        return this.#emit("left", { ...data, name });
      }
      case "chat":
        this.#log(id, { kind: "chat", id: data.id, name: data.name, text: data.text, st: data.st });
        return;
      case "closed":
        if (this.replay) {
          this.replay.ended = true;
          this.replay.endTick = this.latest?.n ?? this.replay.lastTick;
        }
        this.#finish(data.reason || "room closed");
        return;
      default:
      // unknown event types are ignored
    }
  }

  /** A replay's snapshot of tick n was played. */
  #played(n) {
    const r = this.replay;
    if (r.firstTick === null && this.whole && !this.stretch) r.firstTick = n;
    r.lastTick = Math.max(r.lastTick ?? n, n);
    if (r.seek && r.seek.landed === null) r.seek.landed = n;
    if (this.stretch) this.stretch[1] = n;
    else this.played.push((this.stretch = [n, n]));
    if (r.paused && this.es) {
      // Paused: a seek shows the tick it lands on, and waits there.
      this.#closeStream();
      this.#setConnection({ state: "paused", attempt: 0 });
    }
  }

  #log(id, entry) {
    if (this.replay && Number.isInteger(id)) {
      if (this.shown.has(id)) return; // in the log since the seek
      entry.tick = this.latest?.n ?? 0;
      this.history.set(id, entry);
      this.shown.add(id);
    }
    this.chatLog.push(entry);
    if (this.chatLog.length > 200) this.chatLog.shift();
    this.#emit("chat", entry);
  }

  /** Whether every tick of the recording before `tick` was played here. */
  #chatKnownBefore(tick) {
    const first = this.replay.firstTick;
    if (first === null) return tick === 0;
    if (tick <= first) return true;
    let reach = first - 1;
    for (const [a, b] of [...this.played].sort((x, y) => x[0] - y[0])) {
      if (a > reach + 1) break;
      reach = Math.max(reach, b);
    }
    return reach >= tick - 1;
  }

  #finish(reason) {
    this.#stop();
    this.#setConnection({ state: "closed", reason });
    this.#emit("closed", { reason });
  }

  #closeStream() {
    this.es?.close();
    this.es = null;
    this.probe?.abort();
    this.probe = null;
  }

  #stop() {
    this.stopped = true;
    this.#closeStream();
    this.abort?.abort();
  }

  /** Stops the feed. */
  close() {
    this.#stop();
    this.#setConnection({ state: "closed", reason: "closed" });
  }

  /**
   * Replays: closes the stream where the replay is; `play()` goes on from
   * the last event received.
   */
  pause() {
    const r = this.replay;
    if (!r || r.paused) return;
    r.paused = true;
    this.playback.setRate(0);
    if (r.ended || this.stopped) return;
    // A stream that has not brought the tick it was opened for (a seek,
    // or the start) is kept until it has, so that the pause shows it.
    const landing = this.es && (this.latest === null || (r.seek !== null && r.seek.landed === null));
    if (!landing) {
      this.#closeStream();
      this.#setConnection({ state: "paused", attempt: 0 });
    }
  }

  /** Replays: goes on from where the replay was paused; from the start after the end. */
  play() {
    const r = this.replay;
    if (!r) return;
    if (r.ended || this.stopped) {
      r.paused = false;
      this.playback.setRate(r.speed);
      this.seek(r.ended ? 0 : (this.latest?.n ?? r.from));
      return;
    }
    if (!r.paused) return;
    r.paused = false;
    this.playback.setRate(r.speed);
    if (!this.es) this.#openSSE(); // resumes after lastEventId
  }

  /**
   * Replays: plays from `tick` (the first recorded tick at or after it),
   * over a new stream. The chat log becomes the lines already seen from
   * before that tick, with a notice when part of the recording before it
   * was never played here. While paused, the replay shows that tick and
   * stays paused.
   */
  seek(tick) {
    const r = this.replay;
    if (!r) return;
    tick = Math.max(0, Math.floor(Number(tick) || 0));
    this.#closeStream();
    this.stopped = false;
    this.retry = 0;
    r.ended = false;
    r.from = tick;
    r.seek = { asked: tick, landed: null };
    this.lastEventId = null;
    this.stretch = null;
    // From the first tick or before, the stream is the whole recording and
    // brings every line again; from a later tick, the lines said after it.
    const whole = r.firstTick === null ? tick === 0 : tick <= r.firstTick;
    const before = whole ? [] : [...this.history.entries()].filter(([, e]) => e.tick < tick).sort((a, b) => a[0] - b[0]);
    this.chatLog = before.map(([, e]) => e).slice(-200);
    this.shown = new Set(before.map(([id]) => id));
    if (!this.#chatKnownBefore(tick)) {
      this.chatLog.push({ kind: "info", text: `chat before tick ${tick} that was not played here is not shown`, st: Date.now() });
    }
    this.#emit("seek", { tick });
    this.#openSSE();
  }

  /** Replays: plays at `x` times the room's pace (0.25 to 16) from now on. */
  setSpeed(x) {
    const r = this.replay;
    if (!r) return;
    r.speed = replaySpeed(x);
    if (r.paused) return;
    this.playback.setRate(r.speed);
    if (this.es) {
      // The pace is the server's: the stream is reopened after the last
      // event (or from the tick asked, before any came).
      this.#closeStream();
      this.#openSSE();
    }
  }

  /** The server's clock now, Unix ms (estimated from the snapshots); a replay's recorded time. */
  serverNow() {
    return this.clock.serverNow();
  }

  /**
   * What to draw now: every table interpolated about two snapshot
   * intervals in the past, and the newest orbs.
   * @returns {View}
   */
  view() {
    const s = this.buffer.sampleTables(this.serverNow() - 2 * this.buffer.interval);
    return { mode: this.mode, tables: s.tables, playerTable: s.playerTable, players: s.players, orbs: this.latest?.orbs ?? [], me: null };
  }
}

/**
 * Opens a room's spectator feed and returns the running view; with
 * `delay` the feed is that many seconds behind the room.
 *
 * @param {ConstructorParameters<typeof Spectator>[0]} options
 * @returns {Spectator}
 */
export function spectate(options) {
  const s = new Spectator(options);
  s.start();
  return s;
}

/**
 * Plays a room's recording (GET /rooms/{room}/replay) and returns the
 * view, a Spectator with `pause()`, `play()`, `seek(tick)` and
 * `setSpeed(x)`. Pausing closes the stream; playing reopens it after the
 * last event received; seeking reopens it from a tick; at the end
 * (`closed` with reason "end-of-replay") the stream is closed and nothing
 * reconnects.
 *
 * @param {{room: string, from?: number, speed?: number, paused?: boolean, server?: string, token?: string}} options
 * @returns {Spectator}
 */
export function watchReplay({ room, from = 0, speed = 1, paused = false, server, token }) {
  const s = new Spectator({ room, server, token, replay: { from, speed, paused } });
  s.start();
  return s;
}

/**
 * A remote participant of a call.
 * @typedef {object} CallPeer
 * @property {string} id
 * @property {string} name
 * @property {boolean} polite whether this side gives way in a glare
 * @property {RTCPeerConnectionState} state
 * @property {string} channel DataChannel state ("none" until one exists)
 * @property {number} connectMs ms from first contact to connected, 0 until then
 * @property {number} openMs ms from first contact to an open DataChannel, 0 until then
 */

/**
 * A voice call over WebRTC, signaled on /ws/signal: microphone audio to
 * every peer, and a DataChannel per peer for text.
 *
 * Negotiation is "perfect negotiation": the newcomer offers to each peer
 * in its welcome; when offers collide, the side whose id sorts lower is
 * polite and rolls its offer back, the other ignores the colliding offer.
 * Remote ICE candidates are held until the remote description is set.
 *
 * Events: `state` (ConnectionState), `welcome` ({id}), `peers` (CallPeer[]),
 * `message` ({from, name, text}), `error` ({message}).
 */
export class Call extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.call call id (a game room's call uses the room id)
   * @param {string} options.name display name
   * @param {string} [options.server] server origin (default: this page's)
   * @param {string} [options.token] JWT when the server requires one
   * @param {boolean} [options.audio] send microphone audio (true)
   * @param {string} [options.channel] DataChannel label ("chat")
   */
  constructor({ call, name, server, token, audio = true, channel = "chat" }) {
    super();
    this.call = call;
    this.name = name;
    this.server = server;
    this.token = token;
    this.audio = audio;
    this.label = channel;
    /** This peer's id, null before the welcome. */
    this.id = null;
    /** @type {ConnectionState} */
    this.connection = { state: "idle", attempt: 0 };
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    /** The microphone stream, when `audio` is on and allowed. */
    this.stream = null;
    this.muted = false;
    /** DataChannel messages sent and received, oldest first. */
    this.messages = [];
    this.iceServers = [];
    /** Names of peers that joined and have not offered yet. */
    this.names = new Map();
    this.ws = null;
  }

  /** Gets the microphone (when asked to) and joins the call. */
  async start() {
    this.#setConnection({ state: "connecting" });
    if (this.audio) {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      } catch (err) {
        this.fail(`microphone: ${err.message}`);
      }
    }
    let ws;
    try {
      ws = new WebSocket(wsURL(this.server, "/ws/signal"));
    } catch (err) {
      this.fail(err.message);
      this.#setConnection({ state: "closed", reason: err.message });
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.signal({ type: "join", call: this.call, name: this.name, token: this.token });
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      this.#onSignal(m).catch((err) => this.fail(`signal ${m?.type}: ${err.message}`));
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.#setConnection({ state: "closed", reason: this.connection.reason ?? (e.reason || CLOSE_REASONS[e.code] || `code ${e.code}`) });
    };
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setConnection(c) {
    this.connection = { attempt: 0, ...c };
    this.#emit("state", this.connection);
  }

  /** @ignore Reports a problem as an `error` event (used by the peer connections). */
  fail(message) {
    this.#emit("error", { message });
  }

  /** @ignore Sends a message on the signaling WebSocket (used by the peer connections). */
  signal(m) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  async #onSignal(m) {
    switch (m.type) {
      case "welcome":
        this.id = m.id;
        this.iceServers = m.iceServers ?? [];
        this.#setConnection({ state: "connected" });
        this.#emit("welcome", { id: m.id });
        for (const p of m.peers ?? []) this.#link(p.id, p.name, true);
        return;
      case "peer-joined":
        // The newcomer offers; its connection starts with that offer.
        this.names.set(m.id, m.name);
        return;
      case "peer-left":
        this.names.delete(m.id);
        this.links.get(m.id)?.close();
        this.links.delete(m.id);
        this.changed();
        return;
      case "offer":
      case "answer":
        return (this.links.get(m.from) ?? this.#link(m.from, this.names.get(m.from) ?? "", false)).onDescription(m.type, m.sdp);
      case "ice-candidate":
        return this.links.get(m.from)?.onCandidate(m.candidate);
      case "error":
        if (["unauthorized", "call-full", "bad-message"].includes(m.code)) {
          this.connection.reason = m.message || m.code;
        }
        this.fail(`${m.code}: ${m.message}`);
        return;
      default:
      // unknown types are ignored
    }
  }

  #link(id, name, offerer) {
    let l = this.links.get(id);
    if (!l) {
      l = new PeerLink(this, id, name, offerer);
      this.links.set(id, l);
      this.changed();
    } else if (name) {
      l.name = name;
    }
    return l;
  }

  /** @ignore Announces a change of the peers (used by the peer connections). */
  changed() {
    this.#emit("peers", this.peers());
  }

  /** @returns {CallPeer[]} the remote peers and their states, by id */
  peers() {
    return [...this.links.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((l) => l.info());
  }

  /**
   * Sends a text to every peer with an open DataChannel.
   * @param {string} text
   * @returns {number} peers it was sent to
   */
  send(text) {
    let n = 0;
    for (const l of this.links.values()) if (l.send(text)) n++;
    if (n > 0) this.record({ dir: "out", from: this.id, name: this.name, text });
    return n;
  }

  /** @ignore Keeps a DataChannel message (used by the peer connections). */
  record(m) {
    this.messages.push({ ...m, at: Date.now() });
    if (this.messages.length > 200) this.messages.shift();
    if (m.dir === "in") this.#emit("message", m);
  }

  /**
   * Mutes or unmutes the microphone (the track keeps running, silent).
   * @param {boolean} muted
   */
  setMuted(muted) {
    this.muted = muted;
    for (const t of this.stream?.getAudioTracks() ?? []) t.enabled = !muted;
  }

  /** Leaves the call, closes every connection and stops the microphone. */
  leave() {
    this.signal({ type: "leave" });
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    for (const l of this.links.values()) l.close();
    this.links.clear();
    for (const t of this.stream?.getTracks() ?? []) t.stop();
    this.#setConnection({ state: "closed", reason: "left" });
    this.changed();
  }
}

/** The connection to one remote peer of a Call. */
class PeerLink {
  constructor(call, id, name, offerer) {
    this.call = call;
    this.id = id;
    this.name = name;
    // Ids are ASCII, so string order is byte order.
    this.polite = call.id < id;
    this.start = performance.now();
    this.connectMs = 0;
    this.openMs = 0;
    this.makingOffer = false;
    this.offering = null;
    this.ignoreOffer = false;
    this.negotiated = false; // a remote description has been applied once
    this.pendingCandidates = [];
    this.channels = new Set();
    this.audioEl = null;
    this.pc = this.newPC();
    // The offerer opens the channel, which also starts the negotiation.
    if (offerer) this.watch(this.pc.createDataChannel(call.label));
  }

  /** A PeerConnection with the microphone; events of replaced ones are ignored. */
  newPC() {
    const call = this.call;
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    const current = () => this.pc === pc;
    for (const t of call.stream?.getTracks() ?? []) pc.addTrack(t, call.stream);
    pc.onnegotiationneeded = () => current() && this.offer();
    pc.onicecandidate = ({ candidate }) => {
      if (current()) call.signal({ type: "ice-candidate", to: this.id, candidate: candidate ? candidate.toJSON() : null });
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      if (pc.connectionState === "connected" && !this.connectMs) this.connectMs = performance.now() - this.start;
      call.changed();
    };
    pc.ondatachannel = (e) => current() && this.watch(e.channel);
    pc.ontrack = (e) => current() && this.play(e.streams[0] ?? new MediaStream([e.track]));
    return pc;
  }

  offer() {
    const pc = this.pc;
    this.offering = (async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        if (this.pc === pc) this.call.signal({ type: pc.localDescription.type, to: this.id, sdp: pc.localDescription.sdp });
      } catch (err) {
        if (this.pc === pc) this.call.fail(`offer to ${this.id}: ${err.message}`);
      } finally {
        this.makingOffer = false;
      }
    })();
  }

  async onDescription(type, sdp) {
    let pc = this.pc;
    const collision = type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    if (type === "answer" && pc.signalingState !== "have-local-offer") return; // stale
    if (collision) {
      // The polite side gives way. In the first negotiation it answers on a
      // fresh PeerConnection: Chromium rolls the offer back, but then often
      // gathers no ICE candidates for the answer. Later it rolls back.
      await this.offering;
      if (!this.negotiated) {
        for (const dc of this.channels) dc.close();
        this.channels.clear();
        const old = pc;
        pc = this.pc = this.newPC();
        old.close();
      } else if (pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" });
      }
    }
    await pc.setRemoteDescription({ type, sdp });
    this.negotiated = true;
    for (const c of this.pendingCandidates.splice(0)) await this.addCandidate(c);
    if (type === "offer") {
      await pc.setLocalDescription();
      this.call.signal({ type: pc.localDescription.type, to: this.id, sdp: pc.localDescription.sdp });
    }
  }

  async onCandidate(candidate) {
    if (!candidate?.candidate) return; // end of candidates
    if (!this.pc.remoteDescription) {
      if (this.pendingCandidates.length < 256) this.pendingCandidates.push(candidate);
      return;
    }
    await this.addCandidate(candidate);
  }

  async addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      if (!this.ignoreOffer) this.call.fail(`candidate from ${this.id}: ${err.message}`);
    }
  }

  watch(dc) {
    this.channels.add(dc);
    dc.onopen = () => {
      if (!this.openMs) this.openMs = performance.now() - this.start;
      this.call.changed();
    };
    dc.onclose = () => {
      this.channels.delete(dc);
      this.call.changed();
    };
    dc.onmessage = async (e) => {
      const text = typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data instanceof Blob ? await e.data.arrayBuffer() : e.data);
      this.call.record({ dir: "in", from: this.id, name: this.name, text });
    };
  }

  openChannel() {
    for (const dc of this.channels) if (dc.readyState === "open") return dc;
    return null;
  }

  send(text) {
    const dc = this.openChannel();
    if (!dc) return false;
    dc.send(text);
    return true;
  }

  play(stream) {
    if (!this.audioEl) {
      this.audioEl = new Audio();
      this.audioEl.autoplay = true;
    }
    if (this.audioEl.srcObject !== stream) {
      this.audioEl.srcObject = stream;
      this.audioEl.play().catch(() => {
        // autoplay may be refused until the user interacts; audio then
        // starts with the next interaction.
      });
    }
  }

  info() {
    const dc = this.openChannel() ?? [...this.channels][0];
    return {
      id: this.id,
      name: this.name,
      polite: this.polite,
      state: this.pc.connectionState,
      channel: dc ? dc.readyState : "none",
      connectMs: Math.round(this.connectMs),
      openMs: Math.round(this.openMs),
    };
  }

  close() {
    for (const dc of this.channels) dc.close();
    this.pc.close();
    if (this.audioEl) this.audioEl.srcObject = null;
  }
}

/**
 * Joins a voice call and returns it; the microphone is requested first.
 *
 * @param {ConstructorParameters<typeof Call>[0]} options
 * @returns {Call}
 */
export function joinCall(options) {
  const c = new Call(options);
  c.start();
  return c;
}
