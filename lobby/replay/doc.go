// Package replay records rooms and plays the recordings back: every tick of
// a room's state, at the full tick rate, and its joined, left and chat
// events, so that a replay shows what the live spectator feed showed.
//
// A Store owns a directory of recordings, one file per room (<room>.twr).
// Store.Record makes a Recorder, which observes one room (it implements
// room.Observer); Store.List lists the recordings, newest first; Store.Open
// returns a Reader, which plays a recording from any tick. The store
// removes recordings that ended more than Config.Keep ago, and the oldest
// ones while the directory holds more than Config.MaxBytes; never one being
// recorded. A directory belongs to one server process. Store, Recorder.Close
// and Recorder.Stats are safe for concurrent use; a Recorder's observer
// methods are called from its room's goroutine, and a Reader belongs to
// one goroutine.
//
// # Recording
//
// The Recorder's observer methods never wait for the disk. On the room
// goroutine they quantize the tick's tables to their columns' steps
// (wire.DeltaCodec) and encode a keyframe every Config.KeyframeEvery (2 s)
// or a delta against the previous tick, for any mode's schema; they append
// the record to an in-memory buffer, capped by Config.MaxPending (a record
// that does not fit is dropped and counted, and the next tick is a
// keyframe). The recorder's writer goroutine takes the buffer every
// Config.FlushEvery (1 s), compresses it and appends it to the file in one
// write.
//
// Flush and sync policy: data reaches the file (the operating system's
// page cache) at most FlushEvery after the room produced it, so a process
// that dies, even by kill -9, loses at most the last second; the file is
// fsynced every Config.SyncEvery (10 s) while written and when the
// recording ends, which bounds what a crash of the machine loses.
//
// # File format
//
// A file is the 8 bytes "TWREPLY1" followed by frames, appended and never
// rewritten:
//
//	frame   = u32le length | u32le crc | payload (length bytes, 1 to 16 MiB)
//	crc     = CRC-32C (Castagnoli) of the 4 length bytes, then the payload
//
// The first frame is the header, 'H' and a JSON object: {"version":1,
// "room","mode","hz","start" (Unix ms, unique within a store),"info" (the
// spectator `room` event's data as the room opened, with its schema)}.
// Every other frame is a block, 'B' then its head and its records:
//
//	block   = 'B' | flags | u firstOrd | u records | u ticks |
//	          u firstTick | u lastTick | z endMS | body
//	flags   = 1: the first record is a keyframe; 2: the block holds the
//	          `closed` record; 4: body is DEFLATE-compressed (RFC 1951),
//	          otherwise it is the records as they are
//	record  = type | u length | payload
//
// (u: unsigned LEB128 varint; z: zigzag varint, as in protobuf.) Records
// are numbered from 1 across the file (firstOrd is the first of the
// block's; each block's follows on from the one before), and a block's
// ticks increase. endMS is the server time of its newest tick, or the close
// time. Record types:
//
//	1 keyframe  u len | players (JSON [{"id","name"}]) | delta from nothing
//	2 tick      delta from the previous tick record
//	3 joined    u live id | `joined` data (JSON)
//	4 left      u live id | `left` data (JSON)
//	5 chat      u live id | `chat` data (JSON)
//	6 closed    z end (Unix ms) | `closed` data (JSON), the last record
//
// A delta is wire.DeltaCodec's encoding (tick n, baseline age, st, tables;
// see wire.DeltaCodec.Append); a live id is the id the room's live feed
// gave the event (0: unknown). Each keyframe starts a block, so a replay
// starting at tick t decodes from the newest keyframe block at or before
// t, found from the block heads without decompressing anything. Readers
// skip record types they do not know.
//
// On opening a store, each file is read frame by frame: the first frame
// that is incomplete (torn by a crash), longer than allowed, fails its
// checksum or does not follow on (ordinals, ticks) ends the file, which is
// truncated there; what comes after it is never read as data. A file
// without a good header is removed. A Reader applies the same checks, so
// a damaged file plays as a shorter replay.
//
// # Several nodes
//
// With Config.NATS, a store also keeps its recordings in NATS JetStream,
// where every store on the same NATS lists and plays them, even once the
// recording one is gone. Each recording has a shipper goroutine, fed by
// its writer after each write to the file, that publishes the same bytes
// to the stream SharedStream, subject tickwire.replay.<room>.<start>: the
// magic and the header frame in the first message, then whole frames,
// each message retried until stored (JetStream drops duplicates by
// message id), so that the messages of a subject, put end to end, are a
// recording file. It puts the recording's listing (a Summary and when it
// was put) to the key-value bucket SharedBucket, key <room>, at its start,
// at most every 5 s while it runs, and at its end. The writer never waits
// for NATS: while JetStream cannot be reached, the frames wait in memory,
// up to 16 MiB per recording and 256 MiB per store (beyond that, or 5 s
// after the recording ended, its JetStream copy ends there); while the
// stream cannot be set up at all, nothing waits.
//
// Every store watches the bucket: List and Has include the other nodes'
// recordings (a room's own file wins). Open of a room the store has no
// file of copies the subject into Dir/remote/<room>.twr and reads the
// copy as any other file: the copy is an entry of the store, live (a
// Reader follows it) until the recording's `closed` frame is in, or its
// listing says it ended (or was not put for 30 s) and the stream holds
// no more of it. Copies are retained and pruned like the store's own
// recordings; the directory of copies is emptied when a store opens. The
// stream and the bucket keep what they hold for Config.Keep (their max
// age), on Config.Replicas JetStream servers.
//
// # Replaying
//
// A replay is a sequence of spectator events (`room`, `snap`, `joined`,
// `left`, `chat`, and last `closed` with reason "end-of-replay"). Each
// event's id is its record's ordinal, so ids increase and do not depend
// on where the replay started; a snapshot's `n` is its recorded tick and
// its values are whole multiples of their columns' steps, within half a
// step of the room's.
//
// The viewers of a recording share the work of playing it: a store keeps
// the blocks its readers decoded in a cache, least recently used first
// out, up to Config.CacheBytes (64 MiB). A decoded block holds the events
// of its records, each encoded once as the Server-Sent Event the handler
// writes, and the decoder's state after them, so that a reader that finds
// the next block missing decodes it from there. The first reader to reach
// a block decodes it and the others that reach it meanwhile wait for it;
// what a block decodes to depends only on the blocks up to it, which are
// whole frames, never rewritten (a running room's data not yet written is
// in no block). Blocks are named by file, recording start and offset, so
// that a new recording of a room is never played from an old one's.
// Store.CacheStats counts the blocks decoded and those shared.
package replay
