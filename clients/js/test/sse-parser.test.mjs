// The Server-Sent Events parser, fed the format's corner cases in pieces
// of every size (no server: the stream tests cover the wire).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser } from "../dist/index.js";

/** Parses `text` fed in pieces of `size` characters. */
function parse(text, size = text.length, lastEventId) {
  const events = [];
  const retries = [];
  const parser = new SseParser((event) => events.push(event), (ms) => retries.push(ms), lastEventId);
  for (let at = 0; at < text.length; at += size) parser.push(text.slice(at, at + size));
  return { events, retries, lastEventId: parser.lastEventId };
}

const STREAM =
  "\uFEFF: a comment\n" +
  "id: 1\nevent: table:posts\ndata: {\"a\":1}\n\n" +
  "data: line one\r\ndata:line two\r\ndata\r\n\r\n" +
  "id: 7\rretry: 1500\rretry: soon\rdata:  two spaces\r\r" +
  "event: named\nunknown: field\ndata: x\nid: 8\n\n" +
  "id: 9\n\n" +
  "data: cut off without its blank line\n";

test("every piece size gives the same events", () => {
  const whole = parse(STREAM);
  for (let size = 1; size <= STREAM.length; size++) {
    assert.deepEqual(parse(STREAM, size), whole, `pieces of ${size}`);
  }
});

test("fields, multi-line data, line endings, ids, retry and comments", () => {
  const { events, retries, lastEventId } = parse(STREAM);
  assert.deepEqual(events, [
    { event: "table:posts", data: '{"a":1}', id: "1" },
    { event: "message", data: "line one\nline two\n", id: "1" },
    { event: "message", data: " two spaces", id: "7" },
    { event: "named", data: "x", id: "8" },
  ]);
  assert.deepEqual(retries, [1500]);
  // An event without data is not dispatched, but its id counts; the
  // unfinished last event is not.
  assert.equal(lastEventId, "9");
});

test("an id with NUL is ignored, an empty id clears it, the start id is kept", () => {
  assert.equal(parse("id: 3\u0000\ndata: a\n\n", undefined, "2").events[0].id, "2");
  assert.equal(parse("id\ndata: a\n\n", undefined, "2").events[0].id, "");
  assert.equal(parse(": only a comment\n\n", undefined, "5").lastEventId, "5");
});

test("a reset drops a half-read event and keeps the last id", () => {
  const events = [];
  const parser = new SseParser((event) => events.push(event));
  parser.push("id: 1\ndata: a\n\nid: 2\ndata: half");
  parser.reset();
  parser.push("data: b\n\n");
  assert.deepEqual(events, [
    { event: "message", data: "a", id: "1" },
    { event: "message", data: "b", id: "1" },
  ]);
});
