/**
 * The envelope that endpoints with `reliable` or `requests` speak, shared by the server and
 * `nestjs-ws-endpoints/client`. No dependency: it runs in browsers.
 *
 * Every frame is a header line, `\n`, then the payload (possibly empty). The frame's type (text
 * or binary) is the payload's. The header is ASCII, its fields separated by one space:
 *
 * | header            | direction | meaning                                                    |
 * |-------------------|-----------|------------------------------------------------------------|
 * | `w`               | server →  | welcome, first frame of a connection; payload: `Welcome` JSON |
 * | `m <seq>`         | both      | a message                                                  |
 * | `q <seq> <id>`    | client →  | a request with the client-made id `<id>`                   |
 * | `r <seq> <id>`    | server →  | the reply to request `<id>`                                |
 * | `x <seq> <id>`    | server →  | request `<id>` failed; payload: `{"status","message"}` JSON |
 * | `a <seq>`         | both      | cumulative ack: every message up to `<seq>` arrived        |
 * | `g <seq> <pos>`   | server →  | a message to a group the session is in (reliable mode)     |
 * | `s <seq> <pos>`   | server →  | the session is in a group, which stands at `<pos>`; no payload |
 * | `l <seq> <pos>`   | server →  | the group's messages since the client's position are lost; it stands at `<pos>` |
 * | `p` / `o`         | client → / server → | liveness ping / its pong                         |
 *
 * `<seq>` counts a side's messages, requests and replies from 1 in reliable mode; it is 0 in
 * requests-only mode, which keeps no order. A request id is 1–64 of `A–Z a–z 0–9 _ -`.
 * `<pos>` is `<offset> <epoch> <group>`: the group's offset of the message (or of its last one),
 * the epoch of its history, and the group's name, URI-encoded. A client that connects again
 * names each group's position (`ws_since=<offset>~<epoch>~<group>`, once per group): a new
 * session that joins the group sends what it missed, every message, or `l`.
 * @publicApi
 */
export const Frame = {
  Welcome: 'w',
  Message: 'm',
  Request: 'q',
  Reply: 'r',
  Failure: 'x',
  Ack: 'a',
  Group: 'g',
  GroupPosition: 's',
  GroupLost: 'l',
  Ping: 'p',
  Pong: 'o',
} as const;

export type FrameKind = (typeof Frame)[keyof typeof Frame];

/** The query parameters of a connection that resumes a session. @publicApi */
export const RESUME_PARAM = 'ws_resume';
export const ACK_PARAM = 'ws_ack';
/** The query parameter that names a group's position (`<offset>~<epoch>~<group>`). */
export const SINCE_PARAM = 'ws_since';

/** Where a group stands: its last message's offset, in its history's epoch. @publicApi */
export interface GroupPosition {
  offset: number;
  epoch: string;
}

/** The longest group name, in UTF-16 units. */
export const MAX_GROUP_NAME = 128;

/** Whether `group` may name a group: 1–128 UTF-16 units of well-formed Unicode (no lone surrogate). */
export function isGroupName(group: unknown): group is string {
  return (
    typeof group === 'string' &&
    group !== '' &&
    group.length <= MAX_GROUP_NAME &&
    !LONE_SURROGATE.test(group)
  );
}

const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What the server says first on every connection of an enveloped endpoint. @publicApi */
export interface Welcome {
  /** The session's id (the same across the connections of a resumed session). */
  session: string;
  /** Whether the endpoint is reliable: messages carry sequence numbers and are acked. */
  reliable: boolean;
  /** Whether this connection continues an earlier session (`false` for a new one). */
  resumed: boolean;
  /**
   * The token that resumes this session on the next connection (reliable mode). The older ones
   * stop resuming once the client has sent a frame on this connection.
   */
  token?: string;
  /** The last of the client's messages the server has (reliable mode): resend what follows. */
  ack: number;
  /** ms the server keeps the session after its connection drops (reliable mode). */
  resumeWindow?: number;
  /**
   * Bytes the server keeps unacked before its sends wait (reliable mode): the client acks at
   * half of it at the latest.
   */
  replayBuffer?: number;
}

/** A request's failure, as the `x` frame carries it. @publicApi */
export interface RequestFailure {
  status: number;
  /** What went wrong; a validation failure lists each problem. */
  message: string | string[];
}

/** One parsed header. */
export interface Header {
  kind: FrameKind;
  seq: number;
  id?: string;
  /** `g`, `s`, `l`: the group, and where it stands. */
  group?: string;
  position?: GroupPosition;
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `id` may name a request. */
export function isRequestId(id: unknown): id is string {
  return typeof id === 'string' && REQUEST_ID.test(id);
}

/** The header line of a frame, with its `\n`. */
export function header(kind: FrameKind, seq?: number, id?: string): string {
  if (seq === undefined) return `${kind}\n`;
  return id === undefined ? `${kind} ${seq}\n` : `${kind} ${seq} ${id}\n`;
}

/** Parses a header line (without its `\n`); `undefined` when it is not one. */
export function parseHeader(line: string): Header | undefined {
  const kind = line[0] as FrameKind;
  switch (kind) {
    case Frame.Welcome:
    case Frame.Ping:
    case Frame.Pong:
      return line.length === 1 ? { kind, seq: 0 } : undefined;
    case Frame.Message:
    case Frame.Ack: {
      const seq = parseSeq(line, 2, line.length);
      return line[1] === ' ' && seq >= 0 ? { kind, seq } : undefined;
    }
    case Frame.Group:
    case Frame.GroupPosition:
    case Frame.GroupLost: {
      const fields = line.split(' ');
      if (fields.length !== 5) return undefined;
      const seq = parseSeq(fields[1], 0, fields[1].length);
      const offset = parseSeq(fields[2], 0, fields[2].length);
      const group = decodeGroup(fields[4]);
      if (seq < 0 || offset < 0 || !fields[3] || group === undefined) {
        return undefined;
      }
      return { kind, seq, group, position: { offset, epoch: fields[3] } };
    }
    case Frame.Request:
    case Frame.Reply:
    case Frame.Failure: {
      const space = line.indexOf(' ', 2);
      if (line[1] !== ' ' || space < 0) return undefined;
      const seq = parseSeq(line, 2, space);
      const id = line.slice(space + 1);
      return seq >= 0 && isRequestId(id) ? { kind, seq, id } : undefined;
    }
    default:
      return undefined;
  }
}

/** The tail of a `g`, `s` or `l` header: where `group` stands. */
export function positionField(group: string, position: GroupPosition): string {
  return `${position.offset} ${position.epoch} ${encodeURIComponent(group)}`;
}

/** A `ws_since` value: where the client left `group`. */
export function sinceValue(group: string, position: GroupPosition): string {
  return `${position.offset}~${position.epoch}~${group}`;
}

/** Parses a `ws_since` value; `undefined` when it is not one. */
export function parseSince(
  value: string,
): { group: string; position: GroupPosition } | undefined {
  const first = value.indexOf('~');
  const second = value.indexOf('~', first + 1);
  if (first < 1 || second < first + 2) return undefined;
  const offset = parseSeq(value, 0, first);
  const group = value.slice(second + 1);
  if (offset < 0 || !group || group.length > MAX_GROUP_NAME) return undefined;
  return { group, position: { offset, epoch: value.slice(first + 1, second) } };
}

function decodeGroup(field: string): string | undefined {
  try {
    const group = decodeURIComponent(field);
    return group && group.length <= MAX_GROUP_NAME ? group : undefined;
  } catch {
    return undefined;
  }
}

/** The decimal integer in `line[start, end)`, or -1 when it is not one (at most 15 digits). */
function parseSeq(line: string, start: number, end: number): number {
  if (end <= start || end - start > 15) return -1;
  let seq = 0;
  for (let i = start; i < end; i++) {
    const digit = line.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    seq = seq * 10 + digit;
  }
  return seq;
}

/** The longest header line there is, with its `\n`: what a reader looks through for the `\n`. */
export const MAX_HEADER = 2 + 15 + 1 + 64 + 1;

/** The longest header line the server sends: a `g` with a long epoch and group. */
export const MAX_SERVER_HEADER =
  2 + 15 + 1 + 15 + 1 + 64 + 1 + 9 * MAX_GROUP_NAME + 1;

/**
 * When a receiver acks (both sides do the same): after this many messages, or this many bytes,
 * or this many ms after the first message it has not acked yet.
 */
export const ACK_EVERY = 32;
export const ACK_BYTES = 32 * 1024;
export const ACK_DELAY = 1000;
